"""Terminal output: ranked cells with the possibly-best set and verdicts, prompt spread, rank
stability, item diffs (rich), and plain JSON / CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.analysis.compare import CellSummary, Comparison, ItemDiff, RankedCell, Stability, TaskRanking
from harness.analysis.summaries import json_safe
from harness.prompts.messages import prompt_from_json, prompt_text
from harness.report.numbers import percent


def console() -> Console:
    """A console that does not squeeze tables to 80 columns when output is piped."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=160)


def print_json(value: Any) -> None:
    print(json.dumps(json_safe(value), indent=2, ensure_ascii=False, default=str, allow_nan=False))


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "—" if value != value else f"{100 * value:+.1f}"


METHOD_NAMES = {
    "tango-score": "Tango's score interval and test (½-count continuity correction)",
    "tango-score+deff": "Tango's score interval, counts divided by the design effect of the clusters",
    "bootstrap-t": "studentised bootstrap over items, sign-flip floor",
    "bootstrap-t/clusters": "studentised bootstrap over clusters, sign-flip floor",
    "paired-bca": "paired BCa bootstrap of the corpus statistic",
}


def cell_name(s: CellSummary, varying: set[str]) -> str:
    """A cell named by what varies across its task's cells (the rest goes in the title)."""
    parts = []
    if "prompt" in varying or not varying:
        parts.append(s.cell.prompt)
    if "shots" in varying:
        parts.append(f"{s.cell.shots}-shot" + ("" if s.cell.selector == "none" else f" {s.cell.selector}"))
    elif "selector" in varying:
        parts.append(s.cell.selector)
    if "model" in varying:
        parts.append(s.cell.model)
    if "run" in varying:
        parts.append(f"run {s.cell.run_id}")
    return " · ".join(parts)


def varying_fields(cells: Sequence[CellSummary]) -> set[str]:
    fields: dict[str, set[object]] = {"prompt": {c.cell.prompt for c in cells}, "shots": {c.cell.shots for c in cells},
                                      "selector": {c.cell.selector for c in cells}, "model": {c.cell.model for c in cells}}
    varying = {name for name, values in fields.items() if len(values) > 1}
    names = [(c.cell.prompt, c.cell.shots, c.cell.selector, c.cell.model) for c in cells]
    if len(set(names)) < len(names):
        varying.add("run")
    return varying


def constant_text(cells: Sequence[CellSummary], varying: set[str]) -> str:
    first = cells[0].cell
    parts = []
    if "model" not in varying:
        parts.append(first.model)
    if "shots" not in varying and "selector" not in varying:
        parts.append(f"{first.shots}-shot" + ("" if first.selector == "none" else f" {first.selector}"))
    if "prompt" not in varying and len(cells) > 1:
        parts.append(f"prompt {first.prompt}")
    return ", ".join(parts)


def number_formats(ranking: TaskRanking) -> tuple[Callable[[float], str], Callable[[float], str], str]:
    """Formatters for scores and differences: percentage points for metrics in [0, 1]."""
    if ranking.percent:
        return percent, _signed, " (points)"
    return (lambda v: "—" if v != v else f"{v:.3g}"), (lambda v: "—" if v != v else f"{v:+.3g}"), ""


def comparison_tables(comp: Comparison, out: Console | None = None) -> None:
    """Per task: ranked cells with score CI, Δ vs best with CI, adjusted p and verdict; the
    possibly-best set and what each verdict rests on; then prompt spread and rank stability."""
    out = out or console()
    for ranking in comp.rankings:
        summaries = [rc.summary for rc in ranking.cells]
        varying = varying_fields(summaries)
        arrow = "↑" if ranking.higher_is_better else "↓"
        fixed = constant_text(summaries, varying)
        score, signed, unit = number_formats(ranking)
        sizes = {rc.summary.n for rc in ranking.cells}
        same_n = len(sizes) == 1
        title = f"{ranking.task} — {ranking.metric} {arrow}" + (f" · {fixed}" if fixed else "") + (f" · n={sizes.pop()}" if same_n else "")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        columns = [("#", "right"), ("cell", "left")] + ([] if same_n else [("n", "right")]) + [
            (f"{ranking.metric} [{comp.confidence:.0%} CI]", "right"), ("Δ vs best [CI]", "right"), ("p adj", "right"), ("verdict", "left")]
        for column, justify in columns:
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for rc in ranking.cells:
            s, ci, vs = rc.summary, rc.summary.interval, rc.vs_best
            delta = "best" if vs is None else f"{signed(vs.diff.mean)} [{signed(vs.diff.low)},{signed(vs.diff.high)}]"
            row = [str(rc.rank), cell_name(s, varying)] + ([] if same_n else [str(s.n)]) + [
                f"{score(ci.mean)} [{score(ci.low)},{score(ci.high)}]", delta, _p(rc.p_adjusted), rc.verdict.text]
            table.add_row(*row, style="bold" if rc.may_be_best else None)
        out.print(table)
        for line in ranking_notes(comp, ranking, varying):
            out.print(line, highlight=False)
    spreads = [s for s in comp.spreads if s.n_variants >= 2]
    if spreads:
        table = Table(title="prompt sensitivity — spread across prompt variants", title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("task", "model · shots", "variants", "min", "median", "max", "max − min", "best prompt", "worst prompt"):
            table.add_column(column, justify="left" if column in ("task", "model · shots", "best prompt", "worst prompt") else "right")
        for sp in spreads:
            table.add_row(sp.task, sp.setting, str(sp.n_variants), percent(sp.min), percent(sp.median), percent(sp.max), percent(sp.range),
                          sp.best_prompt, sp.worst_prompt)
        out.print(table)
    if comp.stability:
        table = Table(title=f"rank stability of prompt variants (Kendall τ, {comp.confidence:.0%} CI over items)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("task", "setting A", "setting B", "variants", "τ [CI]"):
            table.add_column(column, justify="right" if column in ("variants", "τ [CI]") else "left")
        for st in comp.stability:
            table.add_row(st.task, st.setting_a, st.setting_b, str(st.n_variants), tau_text(st))
        out.print(table)
    if comp.models:
        table = Table(title=f"model vs model across prompt variants (Δ = A − B, {comp.confidence:.0%} CI counts prompt variance)",
                      title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
        for column in ("task", "A − B", "setting", "variants", "Δ [CI]", "p", "worst / best variant"):
            table.add_column(column, justify="right" if column in ("variants", "Δ [CI]", "p") else "left")
        for m in comp.models:
            r = m.result
            table.add_row(m.task, f"{m.model_a} − {m.model_b}", m.setting, str(len(r.variants)),
                          f"{_signed(r.mean)} [{_signed(r.low)},{_signed(r.high)}]", _p(r.p_value),
                          f"{r.worst.name} {_signed(r.worst.diff)} / {r.best.name} {_signed(r.best.diff)}")
        out.print(table)
    for warning in comp.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def pair_tables(comp: Comparison, out: Console | None = None) -> None:
    """Every pair of a task's cells with its adjusted p-value (the step-down max-T of the ranking)."""
    out = out or console()
    for ranking in comp.rankings:
        varying = varying_fields([rc.summary for rc in ranking.cells])
        table = Table(title=f"{ranking.task} — every pair, p adjusted over all {len(ranking.pairs())} pairs", title_justify="left",
                      box=box.SIMPLE_HEAD, padding=(0, 1))
        for column in ("A", "B", "A − B", "p adj"):
            table.add_column(column, justify="right" if column in ("A − B", "p adj") else "left")
        _, signed, _ = number_formats(ranking)
        for i, a in enumerate(ranking.cells):
            for j in range(i + 1, len(ranking.cells)):
                b = ranking.cells[j]
                delta = a.summary.interval.mean - b.summary.interval.mean
                p = float(ranking.p_pairs[i, j])
                table.add_row(cell_name(a.summary, varying), cell_name(b.summary, varying), signed(delta), _p(p),
                              style="bold" if p < ranking.alpha else None)
        out.print(table)


def tau_text(st: Stability) -> str:
    value = "—" if st.tau != st.tau else f"{st.tau:+.2f}"
    if st.ci_low == st.ci_low:
        value += f" [{st.ci_low:+.2f}, {st.ci_high:+.2f}]"
    return value


def ranking_notes(comp: Comparison, ranking: TaskRanking, varying: set[str]) -> list[str]:
    """What the table's verdicts rest on, in plain lines under it."""
    name: Callable[[RankedCell], str] = (lambda rc: cell_name(rc.summary, varying))
    best = ", ".join(name(rc) for rc in ranking.best_set)
    units = f"{ranking.units} clusters of {ranking.n} items" if ranking.clustered else f"{ranking.n} items"
    pairs = len(ranking.cells) * (len(ranking.cells) - 1) // 2
    lines = [
        f"may be best ({1 - ranking.alpha:.0%}): {best}",
        f"  (misses the true best with probability ≤ {ranking.alpha:.0%}: step-down max-T over {pairs} pairs, "
        f"{units} resampled jointly {ranking.resamples:,} times)",
    ]
    tests = sorted({rc.vs_best.test for rc in ranking.cells if rc.vs_best is not None})
    if tests:
        lines.append("  Δ [CI]: cell − best, this pair alone: " + "; ".join(METHOD_NAMES.get(t, t) for t in tests)
                     + ". p adj: over all pairs; it decides the verdict.")
    for rc in ranking.cells[1:]:
        if rc.verdict.code == "worse" and rc.beaten_by is not None:
            lines.append(f"  {name(rc)}: worse than {cell_name(rc.beaten_by, varying)} ({rc.verdict.detail})")
        elif rc.verdict.detail and rc.verdict.code in ("inconclusive", "equivalent"):
            lines.append(f"  {name(rc)}: {rc.verdict.text}: {rc.verdict.detail}")
    if ranking.margin is None and any(rc.verdict.code == "inconclusive" for rc in ranking.cells):
        lines.append("  (pass --margin M to test equivalence within ±M and see the items each comparison would need)")
    return lines


def comparison_csv(comp: Comparison) -> str:
    """The ranked cells as CSV (one row per cell, the same fields as ``--json``)."""
    rows = comp.rows()
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def diff_view(label_a: str, label_b: str, metric: str, diffs: Sequence[ItemDiff], n_shared: int, out: Console | None = None,
              limit: int | None = None) -> None:
    """Items where two cells disagree: prompts, answers and scores side by side."""
    out = out or console()
    out.print(f"[bold]{len(diffs)}[/] of {n_shared} shared items disagree on {metric}:  A = {label_a}   B = {label_b}", highlight=False)
    for d in list(diffs)[:limit]:
        table = Table(title=f"item {d.item_id} — target: {d.target}", title_justify="left", show_lines=True, expand=True)
        table.add_column(f"A  {metric}={d.score_a:g}", ratio=1)
        table.add_column(f"B  {metric}={d.score_b:g}", ratio=1)
        pa, pb = prompt_text(prompt_from_json(d.prompt_a)), prompt_text(prompt_from_json(d.prompt_b))
        table.add_row(Text(pa if pa != pb else "(same prompt as B)"), Text(pb))
        table.add_row(Text(f"answer: {d.response_a}"), Text(f"answer: {d.response_b}"))
        out.print(table)
    if limit is not None and len(diffs) > limit:
        out.print(f"... {len(diffs) - limit} more (use --limit)")
