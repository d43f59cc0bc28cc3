"""Turn stored items into per-cell summaries and rankings (data only; report.py prints)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harness.scoring import METRICS
from harness.stats import Interval, mean_interval
from harness.store import CellRecord, Store


@dataclass(frozen=True)
class CellSummary:
    cell: CellRecord
    metric: str
    higher_is_better: bool
    interval: Interval
    scores: dict[str, float]  # item id -> score (the pairing key for comparisons)

    @property
    def n(self) -> int:
        return self.interval.n


def cell_scores(store: Store, run_ids: Sequence[str]) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(run id, cell id) -> item id -> metric -> score."""
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(dict)
    for row in store.items(run_ids):
        table[(row["run_id"], row["cell_id"])][row["item_id"]] = json.loads(row["scores_json"])
    return table


def summarize(store: Store, run_ids: Sequence[str], metric: str | None = None, confidence: float = 0.95) -> list[CellSummary]:
    """One summary per cell, on ``metric`` or each cell's main (first) metric."""
    scores = cell_scores(store, run_ids)
    out = []
    for cell in store.cells(run_ids):
        name = metric or cell.metrics[0]
        definition = METRICS.get(name)
        items = scores.get((cell.run_id, cell.cell_id), {})
        values = {item: s[name] for item, s in items.items() if name in s}
        interval = mean_interval(list(values.values()), definition.kind == "binary", confidence)
        out.append(CellSummary(cell, name, definition.higher_is_better, interval, values))
    return out


def ranked(summaries: Sequence[CellSummary]) -> dict[str, list[CellSummary]]:
    """Per task, cells best first by their metric's own direction."""
    by_task: dict[str, list[CellSummary]] = defaultdict(list)
    for s in summaries:
        by_task[s.cell.task].append(s)
    return {
        task: sorted(cells, key=lambda s: (-s.interval.mean if s.higher_is_better else s.interval.mean, s.cell.prompt))
        for task, cells in by_task.items()
    }
