"""Terminal tables for group aggregates (micro/macro) and per-class classification reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from harness.analysis.aggregates import class_reports, group_summaries
from harness.report.numbers import percent
from harness.report.terminal import Col, legend_text, model_aliases, print_table
from harness.store.store import Store


def aggregates_json(store: Store, summaries: Sequence[Any]) -> dict[str, Any]:
    cells = [s.cell for s in summaries]
    return {
        "groups": [g.to_dict() for g in group_summaries(store, summaries)],
        "per_class": class_reports(store, cells),
    }


def print_aggregates(store: Store, summaries: Sequence[Any], out: Console) -> None:
    groups = group_summaries(store, summaries)
    models = model_aliases([g.model for g in groups] + [s.cell.model for s in summaries])
    if models:
        out.print(Text(legend_text("models", models)))
    if groups:
        columns = [Col("group", wrap=True), Col("members", "right", drop=2), Col("prompt", wrap=True), Col("shots", "right"),
                   Col("selector", wrap=True, drop=3), Col("model", wrap=True), Col("metric", wrap=True, drop=4), Col("micro", "right"),
                   Col("micro CI", "right", drop=1), Col("macro", "right"), Col("macro CI", "right", drop=1)]
        rows = [[g.group, str(len(g.members)), g.prompt, str(g.shots), g.selector, models.get(g.model, g.model), g.metric,
                 percent(g.micro.mean), f"[{percent(g.micro.low)}, {percent(g.micro.high)}]",
                 percent(g.macro.mean), f"[{percent(g.macro.low)}, {percent(g.macro.high)}]"] for g in groups]
        print_table(out, "task groups — micro (items pooled) and macro (mean of members), 95% CI", columns, rows)
    by_id = {s.cell.cell_id: s.cell for s in summaries}
    for cell_id, report in class_reports(store, list(by_id.values())).items():
        cell = by_id[cell_id]
        columns = [Col("label", wrap=True), Col("precision", "right"), Col("recall", "right"), Col("f1", "right"), Col("support", "right")]
        rows = [[label, percent(row["precision"]), percent(row["recall"]), percent(row["f1"]), str(int(row["support"]))]
                for label, row in report.items()]
        print_table(out, f"{cell.task} | {cell.prompt} | {cell.shots}-shot | {models.get(cell.model, cell.model)} — per class", columns, rows)
