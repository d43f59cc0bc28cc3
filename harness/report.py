"""Terminal output: ranked cell tables (rich) and plain JSON for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.compare import CellSummary, ranked


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
