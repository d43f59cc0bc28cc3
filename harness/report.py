"""Terminal output: ranked cell tables with rank groups and Holm p-values, prompt spread,
item diffs (rich), and plain JSON / CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.compare import CellSummary, Comparison, ItemDiff, ranked
from harness.requests import prompt_from_json, prompt_text


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def console() -> Console:
    """A console that does not squeeze tables to 80 columns when output is piped."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=160)


def ranked_tables(summaries: Sequence[CellSummary], out: Console | None = None) -> None:
    out = out or console()
    for task, cells in ranked(summaries).items():
        metric = cells[0].metric
        arrow = "↑" if cells[0].higher_is_better else "↓"
        table = Table(title=f"{task} — ranked by {metric} {arrow} (95% CI)", title_justify="left")
        for column, justify in [("rank", "right"), ("prompt", "left"), ("shots", "right"), ("selector", "left"),
                                ("model", "left"), ("n", "right"), (metric, "right"), ("95% CI", "right")]:
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for rank, s in enumerate(cells, start=1):
            ci = s.interval
            table.add_row(
                str(rank), s.cell.prompt, str(s.cell.shots), s.cell.selector, s.cell.model, str(s.n),
                _pct(ci.mean), f"[{_pct(ci.low)}, {_pct(ci.high)}]",
            )
        out.print(table)


def summaries_json(summaries: Sequence[CellSummary]) -> list[dict[str, Any]]:
    rows = []
    for task, cells in ranked(summaries).items():
        for rank, s in enumerate(cells, start=1):
            rows.append({
                "task": task, "rank": rank, "run_id": s.cell.run_id, "cell_id": s.cell.cell_id, "prompt": s.cell.prompt,
                "shots": s.cell.shots, "selector": s.cell.selector, "model": s.cell.model, "metric": s.metric,
                "higher_is_better": s.higher_is_better, "n": s.n, "mean": s.interval.mean,
                "ci_low": s.interval.low, "ci_high": s.interval.high, "ci_method": s.interval.method,
            })
    return rows


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "—" if value != value else f"{100 * value:+.1f}"


def comparison_tables(comp: Comparison, out: Console | None = None) -> None:
    """Ranked cells with CI, rank group and Holm p vs best; then prompt spread and rank stability."""
    out = out or console()
    for ranking in comp.rankings:
        arrow = "↑ higher is better" if ranking.higher_is_better else "↓ lower is better"
        table = Table(
            title=f"{ranking.task} — ranked by {ranking.metric} ({arrow}); group = not significantly different "
                  f"from its leader (Holm, α={comp.alpha})",
            title_justify="left",
        )
        for column, justify in [("rank", "right"), ("group", "right"), ("prompt", "left"), ("shots", "right"),
                                ("selector", "left"), ("model", "left"), ("n", "right"), (ranking.metric, "right"),
                                (f"{comp.confidence:.0%} CI", "right"), ("Δ vs best", "right"), ("Δ CI", "right"),
                                ("p (Holm)", "right"), ("test", "left")]:
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for rc in ranking.cells:
            s, ci, vs = rc.summary, rc.summary.interval, rc.vs_best
            table.add_row(
                str(rc.rank), str(rc.group), s.cell.prompt, str(s.cell.shots), s.cell.selector, s.cell.model, str(s.n),
                _pct(ci.mean), f"[{_pct(ci.low)}, {_pct(ci.high)}]",
                "best" if vs is None else _signed(vs.diff.mean),
                "" if vs is None else f"[{_signed(vs.diff.low)}, {_signed(vs.diff.high)}]",
                _p(rc.p_holm), "" if vs is None else vs.test,
                style="bold" if rc.group == 1 else None,
            )
        out.print(table)
    spreads = [s for s in comp.spreads if s.n_variants >= 2]
    if spreads:
        table = Table(title="prompt sensitivity — spread across prompt variants", title_justify="left")
        for column in ("task", "model · shots", "variants", "min", "median", "max", "max − min", "best prompt", "worst prompt"):
            table.add_column(column, justify="left" if column in ("task", "model · shots", "best prompt", "worst prompt") else "right")
        for s in spreads:
            table.add_row(s.task, s.setting, str(s.n_variants), _pct(s.min), _pct(s.median), _pct(s.max), _pct(s.range),
                          s.best_prompt, s.worst_prompt)
        out.print(table)
    if comp.stability:
        table = Table(title="rank stability of prompt variants (Kendall τ; 1 = same order)", title_justify="left")
        for column in ("task", "setting A", "setting B", "variants", "τ"):
            table.add_column(column, justify="right" if column in ("variants", "τ") else "left")
        for st in comp.stability:
            table.add_row(st.task, st.setting_a, st.setting_b, str(st.n_variants), "—" if st.tau != st.tau else f"{st.tau:+.2f}")
        out.print(table)
    for warning in comp.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


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
