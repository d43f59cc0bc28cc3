"""One self-contained HTML report: inline CSS and inline SVG drawn here, no scripts, no network.

Per task: the ranked table (CI, Δ vs best with CI, adjusted p, verdict) with the same notes the
terminal prints, per-cell scores with CI bars, a paired-difference forest plot against the best
cell, a prompt-variant × setting heatmap, and the items where the two best cells disagree. Then
prompt spread and rank stability. An A/B (``harness ab --html``, ``harness report --ab``) gets its
own page built from the same rows and notes as the terminal's, so the two cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from harness.analysis.ab import ABReport
from harness.analysis.compare import Comparison, ItemDiff, RankedCell, TaskRanking, item_diff
from harness.core.files import write_atomic
from harness.prompts.messages import prompt_from_json, prompt_text
from harness.report.ab import AbFormat, ab_notes, ab_rows
from harness.report.numbers import p_value, percent
from harness.report.svg import LABEL_W, PAD, PLOT_W, ROW_H, axis, bounds, escape, figure, short_label
from harness.report.terminal import number_formats, ranking_notes, tau_text, varying_fields
from harness.store.store import Store


def html_p(value: float | None) -> str:
    return p_value(value, below="&lt;0.001")


VERDICT_COLOURS = {"best": "#1b7837", "inconclusive": "#5aae61", "equivalent": "#2166ac", "worse": "#b2182b",
                   "better": "#1b7837"}


def _colour(rc: RankedCell) -> str:
    """Green: may be best; blue: equivalent to the best; red: worse."""
    return VERDICT_COLOURS.get(rc.verdict.code, "#4d4d4d")


def ci_plot(ranking: TaskRanking) -> str:
    """Per-cell mean (dot) and CI (bar), best first, coloured by verdict."""
    cells = ranking.cells
    height = len(cells) * ROW_H
    low, high = bounds([v for rc in cells for v in (rc.summary.interval.low, rc.summary.interval.high)])
    grid, x = axis(low, high, LABEL_W, PLOT_W, PAD, height)
    rows = []
    for i, rc in enumerate(cells):
        s, y = rc.summary, PAD + i * ROW_H + ROW_H / 2
        ci, colour = s.interval, _colour(rc)
        tip = f"{s.label}: {percent(ci.mean)} [{percent(ci.low)}, {percent(ci.high)}], n={s.n}, {rc.verdict.text}"
        rows.append(
            f'<g class="cell"><title>{escape(tip)}</title>'
            f'<text x="{LABEL_W - 8}" y="{y + 4}" class="label">{rc.rank}. {escape(short_label(s.label))}</text>'
            f'<line x1="{x(ci.low):.1f}" y1="{y}" x2="{x(ci.high):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{x(ci.mean):.1f}" cy="{y}" r="5" fill="{colour}"/></g>'
        )
    return figure("ci-plot", f"{ranking.metric} per cell with {len(cells)} CI bars", height, grid + "".join(rows), ranking.metric + " (%)")


def forest_plot(ranking: TaskRanking) -> str:
    """Paired difference of each cell minus the best, with its CI; the zero line is 'as good as best'."""
    cells = [rc for rc in ranking.cells if rc.vs_best is not None]
    if not cells:
        return '<p class="note">Only one cell: nothing to compare against the best.</p>'
    height = len(cells) * ROW_H
    values = [v for rc in cells for v in (rc.vs_best.diff.low, rc.vs_best.diff.high)] + [0.0]  # type: ignore[union-attr]
    low, high = bounds(values, pad=0.02, clamp=(-1.0, 1.0))
    grid, x = axis(low, high, LABEL_W, PLOT_W, PAD, height)
    rows = [f'<line x1="{x(0):.1f}" y1="{PAD - 6}" x2="{x(0):.1f}" y2="{PAD + height}" class="zero"/>']
    for i, rc in enumerate(cells):
        r, y = rc.vs_best, PAD + i * ROW_H + ROW_H / 2
        assert r is not None
        colour = _colour(rc)
        tip = f"{rc.summary.label} − best: {100 * r.diff.mean:+.1f} [{100 * r.diff.low:+.1f}, {100 * r.diff.high:+.1f}], p adj={html_p(rc.p_adjusted)}"
        rows.append(
            f'<g class="diff"><title>{escape(tip)}</title>'
            f'<text x="{LABEL_W - 8}" y="{y + 4}" class="label">{escape(short_label(rc.summary.label))}</text>'
            f'<line x1="{x(r.diff.low):.1f}" y1="{y}" x2="{x(r.diff.high):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>'
            f'<rect x="{x(r.diff.mean) - 5:.1f}" y="{y - 5}" width="10" height="10" fill="{colour}"/></g>'
        )
    return figure("forest-plot", "paired differences against the best cell", height, grid + "".join(rows), "difference vs best (points)")


def heatmap(ranking: TaskRanking) -> str:
    """Prompt variant (rows) × model and shots (columns), cell colour = score."""
    prompts = sorted({rc.summary.cell.prompt for rc in ranking.cells})
    settings = sorted({rc.summary.setting for rc in ranking.cells})
    value = {(rc.summary.cell.prompt, rc.summary.setting): rc.summary.interval.mean for rc in ranking.cells}
    present = [v for v in value.values() if v == v]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    cw, ch, left, top = 170, 30, 200, 48
    parts = []
    for j, setting in enumerate(settings):
        cx = left + j * cw + cw / 2
        model, _, shots = setting.partition(" · ")
        parts.append(f'<text x="{cx}" y="{top - 24}" class="col">{escape(short_label(model)[:28])}</text>'
                     f'<text x="{cx}" y="{top - 8}" class="col">{escape(shots)}</text>')
    for i, prompt in enumerate(prompts):
        y = top + i * ch
        parts.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" class="label">{escape(prompt)}</text>')
        for j, setting in enumerate(settings):
            v = value.get((prompt, setting), float("nan"))
            share = 0.5 if high == low or v != v else (v - low) / (high - low)
            fill = "#eeeeee" if v != v else f"hsl({210 - 90 * share:.0f}, 70%, {88 - 45 * share:.0f}%)"
            text_class = "hm dark" if share > 0.55 and v == v else "hm"
            parts.append(
                f'<g class="hm-cell"><title>{escape(prompt)} · {escape(setting)}: {percent(v)}</title>'
                f'<rect x="{left + j * cw}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}"/>'
                f'<text x="{left + j * cw + cw / 2}" y="{y + ch / 2 + 4}" class="{text_class}">{percent(v)}</text></g>'
            )
    width, height = left + len(settings) * cw + 20, top + len(prompts) * ch + 10
    return (f'<svg class="heatmap" role="img" aria-label="prompt variant by setting heatmap" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def ranked_table(ranking: TaskRanking, comp: Comparison) -> str:
    head = ["rank", "prompt", "shots", "selector", "model", "n", ranking.metric, f"{comp.confidence:.0%} CI",
            "Δ vs best", "Δ CI", "p", "p adj", "verdict", "W/T/L vs best", "unscorable"]
    score, signed, _ = number_formats(ranking)
    rows = []
    for rc in ranking.cells:
        s, ci, r = rc.summary, rc.summary.interval, rc.vs_best
        cells = [
            str(rc.rank), escape(s.cell.prompt), str(s.cell.shots), escape(s.cell.selector), escape(s.cell.model), str(s.n),
            score(ci.mean), f"[{score(ci.low)},{score(ci.high)}]",
            "best" if r is None else signed(r.diff.mean), "" if r is None else f"[{signed(r.diff.low)},{signed(r.diff.high)}]",
            "" if r is None else html_p(r.p_value), html_p(rc.p_adjusted),
            f'<span class="badge" style="background:{_colour(rc)}">{escape(rc.verdict.text)}</span>',
            "" if r is None else f"{r.wins}/{r.ties}/{r.losses}", str(s.unscorable) if s.unscorable else "",
        ]
        rows.append(f"<tr data-verdict='{rc.verdict.code}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{escape(line.strip())}</li>" for line in ranking_notes(comp, ranking, varying_fields([rc.summary for rc in ranking.cells])))
    return (f'<table class="ranked" data-task="{escape(ranking.task)}"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table><ul class='notes'>{notes}</ul>")


def diff_section(label_a: str, label_b: str, metric: str, diffs: Sequence[ItemDiff], n_shared: int, limit: int) -> str:
    rows = []
    for d in list(diffs)[:limit]:
        pa, pb = prompt_text(prompt_from_json(d.prompt_a)), prompt_text(prompt_from_json(d.prompt_b))
        rows.append(
            f"<tr><td>{escape(d.item_id)}</td><td>{escape(d.target)}</td><td>{d.score_a:g}</td><td>{escape(d.response_a)}</td>"
            f"<td>{d.score_b:g}</td><td>{escape(d.response_b)}</td><td><details><summary>prompts</summary>"
            f"<div class='pair'><pre>{escape(pa)}</pre><pre>{escape(pb)}</pre></div></details></td></tr>"
        )
    more = f"<p class='note'>… and {len(diffs) - limit} more.</p>" if len(diffs) > limit else ""
    return (
        f"<p><b>{len(diffs)}</b> of {n_shared} shared items disagree on {escape(metric)}. A = {escape(label_a)}; B = {escape(label_b)}.</p>"
        "<table class='diffs'><thead><tr><th>item</th><th>target</th><th>A</th><th>A answer</th><th>B</th><th>B answer</th>"
        "<th>prompts (A | B)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + more
    )


def _best_diff(store: Store, ranking: TaskRanking, limit: int) -> str:
    """The best cell against the next-ranked cell that disagrees with it on at least one item."""
    a = ranking.cells[0].summary
    for rc in ranking.cells[1:]:
        metric, diffs, shared = item_diff(store, a.cell, rc.summary.cell, ranking.metric)
        if diffs:
            title = f"<h3>Items where the best cell and #{rc.rank} disagree</h3>"
            return title + diff_section(a.label, rc.summary.label, metric, diffs, shared, limit)
    return "<h3>Disagreeing items</h3><p class='note'>Every cell gives the best cell's score on every shared item.</p>"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px} h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ccc} h3{font-size:15px;margin-top:22px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td:nth-child(3),td:nth-child(5),td:nth-child(6){text-align:left}
table.diffs td,table.plain td,table.plain th{text-align:left;vertical-align:top}
.badge{color:#fff;border-radius:9px;padding:0 7px;font-weight:bold}
.notes{font-size:13px;color:#333} .flag{color:#b2182b} tr.pooled td{background:#f6fbf6}
.grid{stroke:#e4e4e4} .zero{stroke:#444;stroke-dasharray:4 3} .tick{font-size:11px;text-anchor:middle;fill:#555}
.label{font-size:12px;text-anchor:end;fill:#222} .axis-title{font-size:12px;text-anchor:middle;fill:#333}
.col{font-size:12px;text-anchor:middle} .hm{font-size:12px;text-anchor:middle;fill:#111} .hm.dark{fill:#fff}
.plots{display:flex;flex-wrap:wrap;gap:18px} .note{color:#666;font-size:13px} .warn{color:#8a5a00}
pre{white-space:pre-wrap;font-size:11px;background:#fafafa;border:1px solid #eee;padding:4px;max-width:520px}
.pair{display:flex;gap:8px}
"""


def render(comp: Comparison, store: Store | None = None, diff_limit: int = 30, title: str = "harness report",
           appendix: Sequence[str] = ()) -> str:
    """The whole report as one HTML string; ``appendix`` sections (e.g. tuning curves) go before the warnings."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{escape(title)}</h1><p class='note'>runs: {escape(', '.join(comp.runs))} · generated {stamp} · "
            f"intervals at {comp.confidence:.0%}; verdicts at α={comp.alpha}"
            + (f", equivalence margin ±{comp.margin:g}" if comp.margin else "") + "; green: may be best, blue: equivalent to the best, "
            "red: worse (see docs/compare.md for what each number guarantees).</p>"]
    for ranking in comp.rankings:
        arrow = "higher is better" if ranking.higher_is_better else "lower is better"
        body.append(f"<h2 id='task-{escape(ranking.task)}'>{escape(ranking.task)} — {escape(ranking.metric)} ({arrow})</h2>")
        body.append(ranked_table(ranking, comp))
        body.append("<div class='plots'><div><h3>Scores with CI</h3>" + ci_plot(ranking) + "</div>"
                    "<div><h3>Paired difference vs best</h3>" + forest_plot(ranking) + "</div></div>")
        body.append("<h3>Prompt variant × model and shots</h3>" + heatmap(ranking))
        if store is not None and len(ranking.cells) >= 2:
            body.append(_best_diff(store, ranking, diff_limit))
    spreads = [s for s in comp.spreads if s.n_variants >= 2]
    if spreads:
        rows = "".join(
            f"<tr><td>{escape(s.task)}</td><td>{escape(s.setting)}</td><td>{s.n_variants}</td><td>{percent(s.min)}</td><td>{percent(s.median)}</td>"
            f"<td>{percent(s.max)}</td><td>{percent(s.range)}</td><td>{escape(s.best_prompt)}</td><td>{escape(s.worst_prompt)}</td></tr>" for s in spreads
        )
        body.append("<h2>Prompt sensitivity</h2><table class='plain spread'><thead><tr><th>task</th><th>model · shots</th><th>variants</th>"
                    "<th>min</th><th>median</th><th>max</th><th>max − min</th><th>best prompt</th><th>worst prompt</th></tr></thead>"
                    f"<tbody>{rows}</tbody></table>")
    if comp.stability:
        rows = "".join(f"<tr><td>{escape(s.task)}</td><td>{escape(s.setting_a)}</td><td>{escape(s.setting_b)}</td><td>{s.n_variants}</td>"
                       f"<td>{escape(tau_text(s))}</td></tr>" for s in comp.stability)
        body.append(f"<h2>Rank stability of prompt variants (Kendall τ, {comp.confidence:.0%} CI over items)</h2>"
                    "<table class='plain stability'><thead><tr><th>task</th>"
                    f"<th>setting A</th><th>setting B</th><th>variants</th><th>τ [CI]</th></tr></thead><tbody>{rows}</tbody></table>")
    if comp.models:
        rows = "".join(
            f"<tr><td>{escape(m.task)}</td><td>{escape(m.model_a)} − {escape(m.model_b)}</td><td>{escape(m.setting)}</td><td>{len(m.result.variants)}</td>"
            f"<td>{100 * m.result.mean:+.1f} [{100 * m.result.low:+.1f},{100 * m.result.high:+.1f}]</td><td>{html_p(m.result.p_value)}</td>"
            f"<td>{escape(m.result.worst.name)} {100 * m.result.worst.diff:+.1f} / {escape(m.result.best.name)} {100 * m.result.best.diff:+.1f}</td></tr>"
            for m in comp.models)
        body.append(f"<h2>Model vs model across prompt variants (Δ = A − B, {comp.confidence:.0%} CI counts prompt variance)</h2>"
                    "<table class='plain models'><thead><tr><th>task</th><th>A − B</th><th>setting</th><th>variants</th><th>Δ [CI]</th>"
                    f"<th>p</th><th>worst / best variant</th></tr></thead><tbody>{rows}</tbody></table>")
    body.extend(appendix)
    if comp.warnings:
        body.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{escape(w)}</li>" for w in comp.warnings) + "</ul>")
    return _page(title, body)


def _page(title: str, body: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def ab_section(report: ABReport) -> str:
    """The A/B verdict: the terminal's rows and notes (harness.report.ab.ab_rows / ab_notes), as HTML."""
    parts = [f"<h2 id='ab'>A/B: tuned = {escape(report.tuned)} vs base = {escape(report.base)} (Δ = tuned − base)</h2>",
             f"<p class='verdict ab-verdict'><b>verdict:</b> {escape(report.verdict)}</p>"]
    for flag in report.flags:
        parts.append(f"<p class='flag'><b>flag:</b> {escape(flag)}</p>")
    for note in report.notes:
        parts.append(f"<p class='note'>note: {escape(note)}</p>")
    for t in report.tasks:
        head = ["cells", "n", "base", "tuned", f"Δ [{report.confidence:.0%} CI]", "p", "verdict"]
        rows = "".join(
            f"<tr class='{'pooled' if bold else 'cell'}'>"
            + "".join(f"<td>{'<b>' if bold else ''}{escape(v)}{'</b>' if bold else ''}</td>" for v in row[:7]) + "</tr>"
            for *row, bold in ab_rows(t, report)
        )
        notes = "".join(f"<li>{escape(line.strip())}</li>" for line in ab_notes(t, report, AbFormat(t.percent)))
        parts.append(f"<h3>{escape(t.task)} — {escape(t.metric)} ({'higher' if t.higher_is_better else 'lower'} is better)</h3>"
                     f"<table class='ab' data-task='{escape(t.task)}'><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
                     + f"</tr></thead><tbody>{rows}</tbody></table><ul class='notes'>{notes}</ul>")
    if report.warnings:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f"<li class='warn'>{escape(w)}</li>" for w in report.warnings) + "</ul>")
    parts.append(f"<p class='note'>runs: base {escape(report.base_run)}, tuned {escape(report.tuned_run)}</p>")
    return "".join(parts)


def render_ab(report: ABReport, store: Store | None = None, diff_limit: int = 30, appendix: Sequence[str] = ()) -> str:
    """An A/B report page: the verdict section, then the disagreeing items of each matched cell."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"harness A/B: {report.tuned} vs {report.base}"
    body = [f"<h1>{escape(title)}</h1><p class='note'>generated {stamp} · intervals at {report.confidence:.0%}; verdicts at "
            f"α={report.alpha}" + (f", equivalence margin ±{report.margin:g}" if report.margin else "") + "</p>", ab_section(report)]
    if store is not None:
        for t in report.tasks:
            for c in t.cells:
                a_ref, b_ref = f"{report.base_run}:{c.base.cell.cell_id}", f"{report.tuned_run}:{c.tuned.cell.cell_id}"
                metric, diffs, shared = item_diff(store, c.base.cell, c.tuned.cell, t.metric)
                body.append(f"<h3>{escape(t.task)} · {escape(c.name)}: items where base and tuned disagree</h3>"
                            + diff_section(f"base {a_ref}", f"tuned {b_ref}", metric, diffs, shared, diff_limit))
    body.extend(appendix)
    return _page(title, body)


def write_ab_report(report: ABReport, path: Path, store: Store | None = None, diff_limit: int = 30,
                    appendix: Sequence[str] = ()) -> Path:
    write_atomic(path, [render_ab(report, store, diff_limit, appendix)])
    os.chmod(path, 0o644)
    return path


def write_report(comp: Comparison, path: Path, store: Store | None = None, diff_limit: int = 30,
                 appendix: Sequence[str] = ()) -> Path:
    write_atomic(path, [render(comp, store, diff_limit, appendix=appendix)])
    os.chmod(path, 0o644)  # a report is meant to be shared (write_atomic's temp file is private)
    return path
