"""The plots of a comparison as Vega-Lite specs (plain dicts), drawn in the page by the vendored
vega-embed of ``harness view`` and rendered to static SVG by ``vl-convert-python`` for a file report.

Per task: each cell's score with its CI, each cell's difference from the best with its CI, a prompt
variant x setting heatmap, and the spread of the score across prompt variants per setting. Every
number in a spec's data is read from the ``Comparison`` (``harness.analysis.compare``): the cell
intervals, the paired differences, the adjusted p-values and verdicts of the ranking, the spreads;
nothing here computes a statistic. The colours are the verdicts the table and the verdict sentence
state, and each plot says which of its intervals are adjusted for multiplicity (none: a CI is of one
cell or one pair alone; the verdict rests on p adjusted over every pair).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.ab import ABReport, ABTask, ClusterDelta
from harness.analysis.compare import Comparison, RankedCell, TaskRanking, setting_labels
from harness.analysis.sensitivity import Slice
from harness.core.deps import require
from harness.core.errors import HarnessError
from harness.report.numbers import p_value
from harness.report.terminal import cell_name, number_formats, tau_text, varying_fields
from harness.tune.card import TuneCard

VEGA_LITE_VERSION = "6.4.1"  # harness/view/static/vendor/vega-lite.min.js; vl-convert renders with its 6.4
VL_CONVERT_VERSION = "6.4"
SCHEMA = f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_VERSION}.json"
STATIC_WIDTH = 560  # px, the whole figure, when a spec drawn for a page's container is rendered on its own
LABEL_LIMIT = 280  # px: the longest cell or setting name shown before it is cut with an ellipsis
ROW = 24  # px per cell / setting row

# the page's badge colours (harness/view/static/view.css): the plot and the table name a verdict alike
VERDICT_COLOURS = {"best": "#1b7837", "better": "#1b7837", "inconclusive": "#5aae61", "equivalent": "#2166ac", "worse": "#b2182b"}
VERDICT_ORDER = ("best", "better", "inconclusive", "equivalent", "worse")
LOSS_COLOUR, EVAL_COLOUR, BEST_COLOUR, STOP_COLOUR = "#b2182b", "#2166ac", "#1b7837", "#8c510a"  # a tuning curve's marks

Spec = dict[str, Any]


@dataclass(frozen=True)
class Plot:
    name: str  # scores | differences | heatmap | spread
    description: str  # what it shows, in words (the figure's accessible name)
    spec: Spec


def _number(value: float | None) -> float | None:
    """A value as JSON carries it: NaN (a cell with no score) and infinities as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _config() -> Spec:
    return {
        "axis": {"labelLimit": LABEL_LIMIT, "titlePadding": 10, "labelFontSize": 12, "titleFontSize": 12, "labelPadding": 4},
        "legend": {"labelLimit": LABEL_LIMIT, "titleLimit": 2 * LABEL_LIMIT, "orient": "bottom", "direction": "horizontal"},
        "title": {"anchor": "start", "fontSize": 14, "subtitleFontSize": 11, "subtitleColor": "#5f6b73", "offset": 8},
        "view": {"stroke": None},
    }


def _frame(title: str, subtitle: Sequence[str], width: int | str) -> Spec:
    """What every spec shares: schema, title, padding that keeps axis titles inside the figure, and its width
    (``"container"``: the page's column, with the labels inside it; a number: the whole figure in px)."""
    return {"$schema": SCHEMA, "title": {"text": title, "subtitle": list(subtitle)}, "width": width, "padding": {"left": 6, "right": 18, "top": 6, "bottom": 6},
            "autosize": {"type": "fit-x", "contains": "padding"}, "config": _config()}


def _axis_format(percent: bool, signed: bool = False) -> Spec:
    """Axis labels as the table prints numbers: percentage points for a metric in [0, 1]."""
    if percent:
        return {"labelExpr": f"format(datum.value * 100, '{'+' if signed else ''}.0f')"}
    return {"format": "+.3~g" if signed else ".3~g"}


def _verdict_colour(cells: Sequence[RankedCell]) -> Spec:
    """Colour by the verdict text the table shows, each in its badge's colour, in a fixed order."""
    seen: dict[str, str] = {}
    for code in VERDICT_ORDER:
        for rc in cells:
            if rc.verdict.code == code and rc.verdict.text not in seen:
                seen[rc.verdict.text] = VERDICT_COLOURS[code]
    for rc in cells:  # a verdict code this table does not know
        seen.setdefault(rc.verdict.text, "#4d4d4d")
    return {"field": "verdict_text", "type": "nominal", "title": "verdict vs the best",
            "scale": {"domain": list(seen), "range": list(seen.values())}}


def _pairs(ranking: TaskRanking) -> int:
    return len(ranking.cells) * (len(ranking.cells) - 1) // 2


def _adjustment_line(ranking: TaskRanking) -> str:
    return f"colour: the verdict, from p adjusted over all {_pairs(ranking)} pairs (step-down max-T), as in the table"


def _cell_rows(ranking: TaskRanking) -> list[dict[str, Any]]:
    varying = varying_fields([rc.summary for rc in ranking.cells])
    score, signed, _ = number_formats(ranking)
    rows = []
    for rc in ranking.cells:
        s, ci, vs = rc.summary, rc.summary.interval, rc.vs_best
        rows.append({
            "cell": f"{rc.rank}. {cell_name(s, varying)}", "cell_id": s.cell.cell_id, "rank": rc.rank, "n": s.n,
            "mean": _number(ci.mean), "ci_low": _number(ci.low), "ci_high": _number(ci.high), "ci_method": ci.method,
            "score": score(ci.mean), "ci": f"[{score(ci.low)}, {score(ci.high)}]",
            "diff": None if vs is None else _number(vs.diff.mean), "diff_low": None if vs is None else _number(vs.diff.low),
            "diff_high": None if vs is None else _number(vs.diff.high), "p_adjusted": _number(rc.p_adjusted),
            "diff_text": "best" if vs is None else signed(vs.diff.mean),
            "diff_ci": "" if vs is None else f"[{signed(vs.diff.low)}, {signed(vs.diff.high)}]", "p_adj": p_value(rc.p_adjusted),
            "verdict": rc.verdict.code, "verdict_text": rc.verdict.text, "may_be_best": rc.may_be_best,
        })
    return rows


def score_plot(comp: Comparison, ranking: TaskRanking, width: int | str = "container") -> Plot:
    """Each cell's score (dot) and its own CI (bar), best first, coloured by its verdict."""
    rows = _cell_rows(ranking)
    percent = ranking.percent
    unit = " (%)" if percent else ""
    x = {"type": "quantitative", "title": f"{ranking.metric}{unit}, {comp.confidence:.0%} CI", "scale": {"zero": False},
         "axis": _axis_format(percent)}
    spec = _frame(f"{ranking.task}: {ranking.metric} per cell", [
        f"bar: the {comp.confidence:.0%} CI of each cell on its own, not adjusted for multiplicity", _adjustment_line(ranking)], width)
    tooltip = [{"field": "cell"}, {"field": "score", "title": ranking.metric}, {"field": "ci", "title": f"{comp.confidence:.0%} CI"},
               {"field": "n"}, {"field": "verdict_text", "title": "verdict"}]
    spec.update({
        "data": {"values": rows}, "height": {"step": ROW},
        "encoding": {"y": {"field": "cell", "type": "nominal", "sort": None, "title": "cell (best first)"},
                     "color": {**_verdict_colour(ranking.cells)}, "tooltip": tooltip},
        "layer": [
            {"mark": {"type": "rule", "strokeWidth": 3}, "encoding": {"x": {"field": "ci_low", **x}, "x2": {"field": "ci_high"}}},
            {"mark": {"type": "point", "filled": True, "size": 80, "opacity": 1}, "encoding": {"x": {"field": "mean", "type": "quantitative"}}},
        ],
    })
    return Plot("scores", f"{ranking.metric} of each cell of {ranking.task} with its {comp.confidence:.0%} CI", spec)


def difference_plot(comp: Comparison, ranking: TaskRanking, width: int | str = "container") -> Plot | None:
    """Each cell minus the best with the pair's CI; 0 is the best; the margin band with ``--margin``. None with one cell."""
    rows = [r for r in _cell_rows(ranking) if r["rank"] > 1]
    if not rows:
        return None
    percent, margin = ranking.percent, ranking.margin
    unit = " (points)" if percent else ""
    x = {"type": "quantitative", "title": f"Δ {ranking.metric} vs the best{unit}, {comp.confidence:.0%} CI", "axis": _axis_format(percent, signed=True)}
    subtitle = [f"bar: the {comp.confidence:.0%} CI of each pair on its own, not adjusted for multiplicity", _adjustment_line(ranking)]
    clear = [r for r in rows if r["verdict"] in ("inconclusive", "equivalent") and r["diff_low"] is not None and r["diff_high"] is not None
             and (r["diff_low"] > 0 or r["diff_high"] < 0)]
    if clear:
        subtitle.append(f"{len(clear)} {'bar is' if len(clear) == 1 else 'bars are'} clear of 0 yet not worse: "
                        "that pair alone differs, but not once every pair is accounted for")
    crossing = [r for r in rows if r["verdict"] == "worse" and r["diff_low"] is not None and r["diff_high"] is not None
                and r["diff_low"] <= 0 <= r["diff_high"]]
    if crossing:
        subtitle.append(f"{len(crossing)} worse {'cell is' if len(crossing) == 1 else 'cells are'} beaten by another cell than the best "
                        "(see the notes under the table)")
    if margin is not None:
        subtitle.append(f"shaded: the equivalence margin ±{margin * 100 if percent else margin:g}{unit}")
    tooltip = [{"field": "cell"}, {"field": "diff_text", "title": "Δ vs best"}, {"field": "diff_ci", "title": f"{comp.confidence:.0%} CI (this pair)"},
               {"field": "p_adj", "title": "p adjusted"}, {"field": "verdict_text", "title": "verdict"}]
    layers: list[Spec] = []
    if margin is not None:
        layers.append({"data": {"values": [{"low": -margin, "high": margin}]}, "mark": {"type": "rect", "color": "#2166ac", "opacity": 0.15},
                       "encoding": {"x": {"field": "low", "type": "quantitative"}, "x2": {"field": "high"}}})
    layers += [
        {"data": {"values": [{"zero": 0.0}]}, "mark": {"type": "rule", "color": "#1b7837", "strokeDash": [4, 3]},
         "encoding": {"x": {"field": "zero", "type": "quantitative"}}},
        {"mark": {"type": "rule", "strokeWidth": 3}, "encoding": {
            "y": {"field": "cell", "type": "nominal", "sort": None, "title": "cell"}, "x": {"field": "diff_low", **x},
            "x2": {"field": "diff_high"}, "color": _verdict_colour(ranking.cells[1:]), "tooltip": tooltip}},
        {"mark": {"type": "square", "filled": True, "size": 90, "opacity": 1}, "encoding": {
            "y": {"field": "cell", "type": "nominal", "sort": None}, "x": {"field": "diff", "type": "quantitative"},
            "color": _verdict_colour(ranking.cells[1:]), "tooltip": tooltip}},
    ]
    spec = _frame(f"{ranking.task}: difference from the best cell", subtitle, width)
    spec.update({"data": {"values": rows}, "height": {"step": ROW}, "layer": layers})
    return Plot("differences", f"difference of each cell of {ranking.task} from the best, with its {comp.confidence:.0%} CI", spec)


def heatmap(comp: Comparison, ranking: TaskRanking, width: int | str = "container") -> Plot:
    """The score of every (setting, prompt variant): settings down, prompt variants across, a legend titled with the metric."""
    score, _, _ = number_formats(ranking)
    labels = setting_labels([rc.summary for rc in ranking.cells])
    rows: list[dict[str, Any]] = [{"prompt": rc.summary.cell.prompt, "setting": labels[(rc.summary.cell.run_id, rc.summary.cell.cell_id)],
             "mean": _number(rc.summary.interval.mean), "score": score(rc.summary.interval.mean), "ci": f"[{score(rc.summary.interval.low)}, "
             f"{score(rc.summary.interval.high)}]", "verdict_text": rc.verdict.text} for rc in ranking.cells]
    prompts = sorted({str(r["prompt"]) for r in rows})
    present = [float(r["mean"]) for r in rows if r["mean"] is not None]
    middle = (min(present) + max(present)) / 2 if present else 0.0  # where the text turns white on the darker half of the scale
    percent = ranking.percent
    legend = {"title": f"{ranking.metric}{' (%)' if percent else ''}", "gradientLength": 220, "tickCount": 5,
              **({"labelExpr": "format(datum.value * 100, '.0f')"} if percent else {"format": ".3~g"})}
    spec = _frame(f"{ranking.task}: {ranking.metric} by prompt variant and setting", [
        "colour: the cell's score (its own point estimate); the number is the score as in the table"], width)
    spec.update({
        "data": {"values": rows}, "height": {"step": 30},
        "encoding": {
            "x": {"field": "prompt", "type": "nominal", "sort": prompts, "title": "prompt variant",
                  "axis": {"orient": "top", "labelAngle": 0 if len(prompts) <= 4 else -30, "labelLimit": 160}},
            "y": {"field": "setting", "type": "nominal", "sort": sorted({str(r["setting"]) for r in rows}), "title": "setting (model · shots)"},
            "tooltip": [{"field": "prompt"}, {"field": "setting"}, {"field": "score", "title": ranking.metric},
                        {"field": "ci", "title": f"{comp.confidence:.0%} CI"}, {"field": "verdict_text", "title": "verdict"}],
        },
        "layer": [
            {"mark": {"type": "rect", "stroke": "#ffffff", "strokeWidth": 2},
             "encoding": {"color": {"field": "mean", "type": "quantitative", "scale": {"scheme": "blues"}, "legend": legend}}},
            {"mark": {"type": "text", "fontSize": 12},
             "encoding": {"text": {"field": "score"}, "color": {"condition": {"test": f"datum.mean > {middle!r}", "value": "#ffffff"},
                                                                "value": "#1d2327"}}},
        ],
    })
    return Plot("heatmap", f"{ranking.metric} of {ranking.task} by prompt variant and setting", spec)


def spread_plot(comp: Comparison, ranking: TaskRanking, width: int | str = "container") -> Plot | None:
    """Per setting with two or more prompt variants: each variant's score (dot), min to max (bar) and median (tick),
    from the comparison's spreads. None when no setting has two variants."""
    spreads = [sp for sp in comp.spreads if sp.task == ranking.task and sp.n_variants >= 2]
    if not spreads:
        return None
    score, _, _ = number_formats(ranking)
    labels = setting_labels([rc.summary for rc in ranking.cells])
    shown = {sp.setting for sp in spreads}
    order = [sp.setting for sp in sorted(spreads, key=lambda sp: -sp.range)]  # the widest spread first
    bars = [{"setting": sp.setting, "min": _number(sp.min), "median": _number(sp.median), "max": _number(sp.max), "range": _number(sp.range),
             "variants": sp.n_variants, "best_prompt": sp.best_prompt, "worst_prompt": sp.worst_prompt,
             "span": f"{score(sp.min)} to {score(sp.max)} (median {score(sp.median)})"} for sp in spreads]
    dots = []
    for rc in ranking.cells:
        setting, mean = labels[(rc.summary.cell.run_id, rc.summary.cell.cell_id)], rc.summary.interval.mean
        if setting in shown and mean == mean:  # a cell with no score is not a variant's dot
            dots.append({"setting": setting, "prompt": rc.summary.cell.prompt, "mean": _number(mean), "score": score(mean)})
    percent = ranking.percent
    x = {"type": "quantitative", "title": f"{ranking.metric}{' (%)' if percent else ''} across prompt variants", "scale": {"zero": False},
         "axis": _axis_format(percent)}
    y = {"field": "setting", "type": "nominal", "sort": order, "title": "setting (model · shots)"}
    spec = _frame(f"{ranking.task}: spread across prompt variants", [
        "bar: lowest to highest variant; tick: median; dot: one prompt variant (its point estimate)"], width)
    spec.update({
        "height": {"step": 2 * ROW},
        "layer": [
            {"data": {"values": bars}, "mark": {"type": "rule", "strokeWidth": 6, "color": "#c6dbef"},
             "encoding": {"y": y, "x": {"field": "min", **x}, "x2": {"field": "max"},
                          "tooltip": [{"field": "setting"}, {"field": "span", "title": ranking.metric}, {"field": "variants"},
                                      {"field": "best_prompt", "title": "best variant"}, {"field": "worst_prompt", "title": "worst variant"}]}},
            {"data": {"values": bars}, "mark": {"type": "tick", "thickness": 3, "size": 18, "color": "#08519c"},
             "encoding": {"y": y, "x": {"field": "median", "type": "quantitative"}}},
            {"data": {"values": dots}, "mark": {"type": "point", "filled": True, "size": 60, "color": "#1d2327", "opacity": 0.8},
             "encoding": {"y": y, "x": {"field": "mean", "type": "quantitative"},
                          "tooltip": [{"field": "prompt"}, {"field": "setting"}, {"field": "score", "title": ranking.metric}]}},
        ],
    })
    return Plot("spread", f"spread of {ranking.metric} of {ranking.task} across prompt variants, per setting", spec)


def task_plots(comp: Comparison, ranking: TaskRanking, width: int | str = "container") -> list[Plot]:
    """The task's plots in page order (a difference plot needs two cells, a spread two prompt variants)."""
    plots = [score_plot(comp, ranking, width), difference_plot(comp, ranking, width), heatmap(comp, ranking, width), spread_plot(comp, ranking, width)]
    return [p for p in plots if p is not None]


def stability_plot(comp: Comparison, width: int | str = "container") -> Plot | None:
    """Kendall τ of the prompt variants' order between two settings (dot) with its CI over items (bar), per task and pair
    of settings; 1 is the same order, 0 no relation, −1 reversed. None when no two settings share two or more variants."""
    rows = [{"pair": f"{s.task}: {s.setting_a} | vs {s.setting_b}", "task": s.task, "tau": _number(s.tau), "low": _number(s.ci_low),
             "high": _number(s.ci_high), "variants": s.n_variants, "items": s.n_items, "text": tau_text(s)} for s in comp.stability]
    if not rows:
        return None
    x = {"type": "quantitative", "title": f"Kendall τ of the prompt variants' order, {comp.confidence:.0%} CI", "scale": {"domain": [-1, 1]}}
    # two lines per pair (setting A, then "vs" setting B) and no axis title: one line of both would be cut at the label limit
    y = {"field": "pair", "type": "nominal", "sort": None, "title": None, "axis": {"labelExpr": "split(datum.label, ' | ')", "labelLineHeight": 14}}
    tooltip = [{"field": "pair"}, {"field": "text", "title": "τ [CI]"}, {"field": "variants"}, {"field": "items"}]
    spec = _frame("Rank stability of the prompt variants", [
        "dot: τ between the variants' order under the two settings; bar: its bootstrap CI over the items both share",
        "1: the same order under both; 0: unrelated; −1: reversed (not adjusted for multiplicity)"], width)
    spec.update({"data": {"values": rows}, "height": {"step": 2 * ROW}, "layer": [
        {"data": {"values": [{"zero": 0.0}]}, "mark": {"type": "rule", "color": "#888888", "strokeDash": [4, 3]},
         "encoding": {"x": {"field": "zero", "type": "quantitative"}}},
        {"mark": {"type": "rule", "strokeWidth": 3, "color": "#2166ac"},
         "encoding": {"y": y, "x": {"field": "low", **x}, "x2": {"field": "high"}, "tooltip": tooltip}},
        {"mark": {"type": "point", "filled": True, "size": 80, "color": "#08306b", "opacity": 1},
         "encoding": {"y": y, "x": {"field": "tau", "type": "quantitative"}, "tooltip": tooltip}},
    ]})
    return Plot("stability", "Kendall tau of the prompt variants' order between settings, with its CI", spec)


def factor_plot(factor: str, slices: Sequence[Slice], confidence: float, width: int | str = "container") -> Plot:
    """One factor of ``harness sensitivity``: per slice (everything else fixed) a band from the lowest to the highest setting's
    mean, and each setting's mean with its CI (the lowest and highest in red), from the analysis's own intervals."""
    bands, levels = [], []
    for s in slices:
        bands.append({"slice": s.context, "min": _number(s.min.mean), "max": _number(s.max.mean), "range": _number(s.range),
                      "lowest": s.min.name, "highest": s.max.name})
        for lv in s.levels:
            ci = lv.interval
            levels.append({"slice": s.context, "setting": lv.name, "mean": _number(lv.mean), "low": _number(ci.low), "high": _number(ci.high),
                           "method": ci.method, "extreme": "lowest or highest" if lv is s.min or lv is s.max else "in between",
                           "draws": lv.draws})
    metric = slices[0].metric
    percent = all(0 <= (lv.mean if lv.mean == lv.mean else 0) <= 1 for s in slices for lv in s.levels)
    x = {"type": "quantitative", "title": f"{metric}{' (%)' if percent else ''}, {confidence:.0%} CI per setting", "scale": {"zero": False},
         "axis": _axis_format(percent)}
    y = {"field": "slice", "type": "nominal", "sort": None, "title": None}
    colour = {"field": "extreme", "type": "nominal", "title": "setting", "scale": {"domain": ["lowest or highest", "in between"],
                                                                                     "range": ["#b2182b", "#2166ac"]}}
    tooltip = [{"field": "setting"}, {"field": "slice", "title": "all else fixed"}, {"field": "mean", "format": ".3f"},
               {"field": "low", "format": ".3f"}, {"field": "high", "format": ".3f"}, {"field": "method", "title": "CI"}]
    spec = _frame(f"{factor}: spread per slice", [
        "band: the lowest to the highest setting's mean; dot and bar: each setting's mean and its own CI (not adjusted)"], width)
    spec.update({"height": {"step": 2 * ROW}, "layer": [
        {"data": {"values": bands}, "mark": {"type": "rule", "strokeWidth": 12, "color": "#c6dbef"},
         "encoding": {"y": y, "x": {"field": "min", **x}, "x2": {"field": "max"},
                      "tooltip": [{"field": "slice"}, {"field": "lowest"}, {"field": "highest"}, {"field": "range", "format": ".3f"}]}},
        {"data": {"values": levels}, "mark": {"type": "rule", "strokeWidth": 1.5, "opacity": 0.7, "yOffset": 6},
         "encoding": {"y": y, "x": {"field": "low", "type": "quantitative"}, "x2": {"field": "high"}, "color": colour, "tooltip": tooltip}},
        {"data": {"values": levels}, "mark": {"type": "point", "filled": True, "size": 60, "opacity": 1},
         "encoding": {"y": y, "x": {"field": "mean", "type": "quantitative"}, "color": colour, "tooltip": tooltip}},
    ]})
    return Plot(f"factor-{factor}", f"{factor}: range of the setting means per slice, each with its CI", spec)


def ab_plot(report: ABReport, task: ABTask, width: int | str = "container") -> Plot:
    """``harness ab`` of one task: tuned − base per matched cell and pooled over them, each with its CI, 0 (no change) marked,
    the margin band with ``--margin``; colour: the row's verdict (a cell's alone, unadjusted; the pooled row's, Holm over tasks)."""
    unit = " (points)" if task.percent else ""
    rows = []
    for c in task.cells:
        d = c.result.diff
        rows.append({"row": c.name, "kind": "one cell", "diff": _number(d.mean), "low": _number(d.low), "high": _number(d.high),
                     "verdict": c.verdict.code, "verdict_text": c.verdict.text, "n": c.result.n, "p": p_value(c.result.p_value)})
    d = task.pooled.diff
    rows.append({"row": f"all {len(task.cells)} cells (pooled)", "kind": "pooled", "diff": _number(d.mean), "low": _number(d.low),
                 "high": _number(d.high), "verdict": task.verdict.code, "verdict_text": task.verdict.text, "n": task.pooled.n,
                 "p": p_value(task.p_holm)})
    seen = {r["verdict_text"]: VERDICT_COLOURS.get(str(r["verdict"]), "#4d4d4d") for r in rows}
    colour = {"field": "verdict_text", "type": "nominal", "title": "verdict", "scale": {"domain": list(seen), "range": list(seen.values())}}
    x = {"type": "quantitative", "title": f"Δ {task.metric} = tuned − base{unit}, {report.confidence:.0%} CI", "axis": _axis_format(task.percent, signed=True)}
    y = {"field": "row", "type": "nominal", "sort": None, "title": None}
    tooltip = [{"field": "row"}, {"field": "diff", "format": "+.4f", "title": "Δ"}, {"field": "low", "format": "+.4f"},
               {"field": "high", "format": "+.4f"}, {"field": "n"}, {"field": "p"}, {"field": "verdict_text", "title": "verdict"}]
    subtitle = [f"a cell's bar: its own {report.confidence:.0%} CI, not adjusted; the pooled row's verdict: p Holm-adjusted over tasks",
                f"right of 0: tuned is {'better' if task.higher_is_better else 'worse'} "
                f"({task.metric}: {'higher' if task.higher_is_better else 'lower'} is better)"]
    layers: list[Spec] = []
    if report.margin is not None:
        subtitle.append(f"shaded: the equivalence margin ±{report.margin * 100 if task.percent else report.margin:g}{unit}")
        layers.append({"data": {"values": [{"low": -report.margin, "high": report.margin}]}, "mark": {"type": "rect", "color": "#2166ac", "opacity": 0.15},
                       "encoding": {"x": {"field": "low", "type": "quantitative"}, "x2": {"field": "high"}}})
    layers += [
        {"data": {"values": [{"zero": 0.0}]}, "mark": {"type": "rule", "color": "#555555", "strokeDash": [4, 3]},
         "encoding": {"x": {"field": "zero", "type": "quantitative"}}},
        {"mark": {"type": "rule", "strokeWidth": 3}, "encoding": {"y": y, "x": {"field": "low", **x}, "x2": {"field": "high"}, "color": colour,
                                                                 "tooltip": tooltip}},
        {"mark": {"type": "point", "filled": True, "size": 80, "opacity": 1, "shape": "diamond"},
         "encoding": {"y": y, "x": {"field": "diff", "type": "quantitative"}, "color": colour, "tooltip": tooltip}},
    ]
    spec = _frame(f"{task.task}: tuned − base", subtitle, width)
    spec.update({"data": {"values": rows}, "height": {"step": ROW}, "layer": layers})
    return Plot("ab", f"difference tuned minus base of {task.task} per cell and pooled, with its {report.confidence:.0%} CI", spec)


def cluster_plot(task: ABTask, deltas: Sequence[ClusterDelta], width: int | str = "container") -> Plot | None:
    """Per declared cluster: tuned − base over its pairs (a bar from 0), worst for the tuned model first. Descriptive: no CI
    and no test per cluster (the task's pooled row is the test); None without clusters."""
    if not deltas:
        return None
    unit = " (points)" if task.percent else ""
    rows = [{"cluster": d.cluster, "diff": _number(d.diff), "pairs": d.pairs, "fixed": d.fixed, "broken": d.broken,
             "direction": "tuned better" if (d.diff > 0) == task.higher_is_better and d.diff != 0 else "tuned worse" if d.diff != 0 else "no change"}
            for d in deltas]
    colour = {"field": "direction", "type": "nominal", "title": None,
              "scale": {"domain": ["tuned better", "no change", "tuned worse"], "range": ["#1b7837", "#888888", "#b2182b"]}}
    spec = _frame(f"{task.task}: tuned − base per cluster", ["descriptive: the mean difference over each cluster's pairs; "
                                                              "no CI or test per cluster (the pooled row above is the test)"], width)
    spec.update({"data": {"values": rows}, "height": {"step": ROW}, "mark": {"type": "bar"}, "encoding": {
        "y": {"field": "cluster", "type": "nominal", "sort": None, "title": None},
        "x": {"field": "diff", "type": "quantitative", "title": f"Δ {task.metric} = tuned − base{unit}", "axis": _axis_format(task.percent, signed=True)},
        "color": colour, "tooltip": [{"field": "cluster"}, {"field": "diff", "format": "+.4f", "title": "Δ"}, {"field": "pairs"},
                                     {"field": "fixed"}, {"field": "broken"}]}})
    return Plot("clusters", f"difference tuned minus base of {task.task} per cluster", spec)


def _step_marks(card: TuneCard, top: str) -> list[Spec]:
    """The best (kept) step and, for a run stopped early, the steps never run (shaded) and where it stopped."""
    data, marks = card.data, []
    if card.stopped_early:
        stop = int(data.get("steps") or 0)
        marks.append({"data": {"values": [{"from": stop, "to": card.max_steps}]}, "mark": {"type": "rect", "color": "#000000", "opacity": 0.05},
                      "encoding": {"x": {"field": "from", "type": "quantitative"}, "x2": {"field": "to"}}})
        marks.append({"data": {"values": [{"step": stop, "what": f"early stop {stop}"}]},
                      "mark": {"type": "rule", "color": STOP_COLOUR, "strokeWidth": 2},
                      "encoding": {"x": {"field": "step", "type": "quantitative"}, "tooltip": [{"field": "what"}]}})
    best = data.get("best_step")
    if best is not None:
        marks.append({"data": {"values": [{"step": best, "what": f"best {best} (kept)", "top": top}]},
                      "mark": {"type": "rule", "color": BEST_COLOUR, "strokeWidth": 2, "strokeDash": [5, 3]},
                      "encoding": {"x": {"field": "step", "type": "quantitative"}, "tooltip": [{"field": "what"}]}})
        marks.append({"data": {"values": [{"step": best, "what": f"best {best}"}]},
                      "mark": {"type": "text", "color": BEST_COLOUR, "align": "left", "dx": 4, "y": 8, "fontSize": 11},
                      "encoding": {"x": {"field": "step", "type": "quantitative"}, "text": {"field": "what"}}})
    return marks


def tuning_plots(card: TuneCard, width: int | str = "container") -> list[Plot]:
    """A ``harness tune`` card's curves on one step axis (0 to the configured maximum): the train loss, then the selection
    metric at each evaluation with its 95% CI (band and bars), the best (kept) step and an early stop marked on both."""
    data = card.data
    steps = {"type": "quantitative", "title": "optimiser step", "scale": {"domain": [0, card.max_steps], "nice": False}}
    losses = [{"step": p["step"], "loss": _number(float(p["loss"]))} for p in data.get("train_loss", []) if p.get("loss") is not None]
    evals = []
    for p in data.get("eval_curve", []):
        value = p.get(card.metric)
        if isinstance(value, (int, float)) and value == value:
            low, high = _number(p.get("ci_low")), _number(p.get("ci_high"))
            evals.append({"step": p.get("step"), "value": float(value), "low": low, "high": high, "n": p.get("n"),
                          "ci": "—" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"})
    out = []
    if losses:
        spec = _frame(f"{card.folder.name}: train loss", ["loss on the answer tokens at each logged step"], width)
        spec.update({"data": {"values": losses}, "height": 150, "layer": [
            {"mark": {"type": "line", "color": LOSS_COLOUR, "point": {"color": LOSS_COLOUR, "size": 20}},
             "encoding": {"x": {"field": "step", **steps}, "y": {"field": "loss", "type": "quantitative", "title": "train loss",
                                                                 "scale": {"zero": False}},
                          "tooltip": [{"field": "step"}, {"field": "loss", "format": ".4f"}]}},
            *_step_marks(card, "loss")]})
        out.append(Plot("tune-loss", f"train loss of {card.folder.name} by step", spec))
    if evals:
        sizes = sorted({int(e["n"]) for e in evals if isinstance(e.get("n"), int)})
        bounded = all(0 <= e["value"] <= 1 for e in evals)
        y = {"type": "quantitative", "title": f"selection {card.metric}", "scale": {"zero": False, **({"domainMax": 1} if bounded else {})}}
        with_ci = [e for e in evals if e["low"] is not None and e["high"] is not None]
        spec = _frame(f"{card.folder.name}: selection {card.metric} by step", [
            "band and bars: the 95% CI at each evaluation" + (f" (n = {', '.join(map(str, sizes))} items)" if sizes else "")], width)
        layers: list[Spec] = []
        if with_ci:
            layers += [{"data": {"values": with_ci}, "mark": {"type": "area", "color": EVAL_COLOUR, "opacity": 0.12},
                        "encoding": {"x": {"field": "step", **steps}, "y": {"field": "low", **y}, "y2": {"field": "high"}}},
                       {"data": {"values": with_ci}, "mark": {"type": "rule", "color": EVAL_COLOUR},
                        "encoding": {"x": {"field": "step", **steps}, "y": {"field": "low", **y}, "y2": {"field": "high"}}}]
        layers.append({"mark": {"type": "line", "color": EVAL_COLOUR, "point": {"color": EVAL_COLOUR, "size": 30}},
                       "encoding": {"x": {"field": "step", **steps}, "y": {"field": "value", **y},
                                    "tooltip": [{"field": "step"}, {"field": "value", "title": card.metric, "format": ".4f"},
                                                {"field": "ci", "title": "95% CI"}, {"field": "n"}]}})
        spec.update({"data": {"values": evals}, "height": 150, "layer": [*layers, *_step_marks(card, "eval")]})
        out.append(Plot("tune-eval", f"selection {card.metric} of {card.folder.name} by step with its 95% CI", spec))
    return out


_RUNTIME_PID: int | None = None  # the process that started vl-convert's runtime: its worker threads do not survive a fork


def render_svg(spec: Spec, width: int = STATIC_WIDTH) -> str:
    """The spec as a static SVG document (vl-convert: the Vega and Vega-Lite the page uses, no browser, no network);
    a spec drawn to its page's container gets ``width`` px."""
    return render_svgs([(spec, width)])[0]


def render_svgs(specs: Sequence[tuple[Spec, int]]) -> list[str]:
    """Each (spec, width) as an SVG document, in order. In a process forked after vl-convert started in its parent, the
    inherited runtime waits forever on a worker thread the fork did not copy: there they are rendered in a fresh Python."""
    global _RUNTIME_PID
    require("vl_convert", "view", "vl-convert-python", "a static plot")
    _check_address_space()
    sized = [{**copy.deepcopy(spec), "width": width} if spec.get("width") == "container" else spec for spec, width in specs]
    if _RUNTIME_PID is not None and os.getpid() != _RUNTIME_PID:
        return _render_in_a_fresh_process(sized)
    import vl_convert

    _RUNTIME_PID = os.getpid()
    return [str(vl_convert.vegalite_to_svg(spec, vl_version=VL_CONVERT_VERSION)) for spec in sized]


V8_ADDRESS_SPACE = 72 * 2**30  # what vl-convert's V8 reserves (not uses): it aborts (SIGTRAP) under 64 GiB more, draws with 72


def _check_address_space() -> None:
    """A clear error instead of V8's abort when the process's address-space limit (``ulimit -v``) leaves too little room."""
    try:
        import resource  # POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm", encoding="ascii") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
    except (ImportError, OSError, ValueError):  # no resource limits or no /proc (not Linux): nothing to check
        return
    if soft != resource.RLIM_INFINITY and soft - used < V8_ADDRESS_SPACE:
        raise HarnessError(f"the static plots are drawn by vl-convert, whose V8 engine reserves about {V8_ADDRESS_SPACE >> 30} GiB of "
                           f"address space (reserved, not used); this process may map {max(0, soft - used) >> 30} GiB more "
                           "(ulimit -v): raise the limit, or browse the run with harness view, which draws its plots in the browser")


RENDER_SCRIPT = ("import json, sys, vl_convert\n"
                 "json.dump([vl_convert.vegalite_to_svg(s, vl_version=sys.argv[1]) for s in json.load(sys.stdin)], sys.stdout)\n")


def _render_in_a_fresh_process(specs: Sequence[Spec], timeout_s: float = 300.0) -> list[str]:
    try:
        done = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, VL_CONVERT_VERSION], input=json.dumps(specs), capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"rendering {len(specs)} plot(s) to SVG took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise HarnessError(f"rendering {len(specs)} plot(s) to SVG failed: {last}")
    return [str(svg) for svg in json.loads(done.stdout)]
