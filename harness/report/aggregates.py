"""Terminal tables for group aggregates (micro/macro) and per-class classification reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.analysis.aggregates import class_reports, group_summaries
from harness.report.numbers import percent
from harness.store.store import Store


def aggregates_json(store: Store, summaries: Sequence[Any]) -> dict[str, Any]:
    cells = [s.cell for s in summaries]
    return {
        "groups": [g.to_dict() for g in group_summaries(store, summaries)],
        "per_class": class_reports(store, cells),
    }


def print_aggregates(store: Store, summaries: Sequence[Any], out: Console) -> None:
    groups = group_summaries(store, summaries)
    if groups:
        table = Table(title="task groups — micro (items pooled) and macro (mean of members), 95% CI", title_justify="left")
        for column in ("group", "members", "prompt", "shots", "selector", "model", "metric", "micro", "micro CI", "macro", "macro CI"):
            table.add_column(column)
        for g in groups:
            table.add_row(
                g.group, str(len(g.members)), g.prompt, str(g.shots), g.selector, g.model, g.metric,
                percent(g.micro.mean), f"[{percent(g.micro.low)}, {percent(g.micro.high)}]",
                percent(g.macro.mean), f"[{percent(g.macro.low)}, {percent(g.macro.high)}]",
            )
        out.print(table)
    by_id = {s.cell.cell_id: s.cell for s in summaries}
    for cell_id, report in class_reports(store, list(by_id.values())).items():
        cell = by_id[cell_id]
        table = Table(title=f"{cell.task} | {cell.prompt} | {cell.shots}-shot | {cell.model} — per class", title_justify="left")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, row in report.items():
            table.add_row(label, percent(row["precision"]), percent(row["recall"]), percent(row["f1"]), str(int(row["support"])))
        out.print(table)
