"""Recompute a run's scores from its stored responses, without the model.

Each stored item keeps the raw backend results, the scored continuations and the target,
so scoring can be replayed: with the task's current filters (reloaded by name or by the
path the run used), and with extra metrics the run never had. If the task is gone, the
stored metric list, target and extracted answer are used instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.scoring import build_filter, get_metric
from harness.scoring.checks import check_task
from harness.scoring.metrics import Outcome
from harness.scoring.scorer import build_outcome, score_outcome
from harness.store import Store, StoredItem, export_run
from harness.tasks.task import Item, Task, find_task


@dataclass(frozen=True)
class MetricCheck:
    """How a recomputed metric compares with the stored one."""

    metric: str
    items: int
    same: int

    @property
    def changed(self) -> int:
        return self.items - self.same


@dataclass(frozen=True)
class RescoreSummary:
    run_id: str
    items: int
    checks: list[MetricCheck]  # metrics that were stored before: reproduced or not
    added: list[str]  # metrics new to the run
    task_sources: dict[str, str]  # task -> where its filters/items came from
    written: bool
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few changed scores

    @property
    def reproduced(self) -> bool:
        return all(c.changed == 0 for c in self.checks)


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def _load_tasks(config: dict[str, Any], tasks_dirs: Sequence[Path], data_dirs: Sequence[Path]) -> dict[str, Task]:
    """The run's tasks, found the way the run found them (its spec's refs and folders) or by name."""
    spec = config.get("spec", {})
    t_dirs = [*tasks_dirs, *(Path(d) for d in spec.get("tasks_dirs", []))]
    d_dirs = [*data_dirs, *(Path(d) for d in spec.get("data_dirs", []))]
    found: dict[str, Task] = {}
    for ref in spec.get("tasks", []):
        try:
            task = check_task(find_task(ref, t_dirs, d_dirs))
        except HarnessError:
            continue
        found[task.name] = task
    for name in config.get("tasks", {}):
        if name not in found:
            try:
                found[name] = check_task(find_task(name, t_dirs, d_dirs))
            except HarnessError:
                pass
    return found


def _stored_item(stored: StoredItem, target: Any) -> Item:
    continuations = stored.continuations
    return Item(id=stored.item_id, row={}, input="", target=target, choices=tuple(continuations) if continuations is not None else None)


def rescore_run(
    store: Store, run_id: str, metrics: Sequence[str] = (), *, write: bool = True,
    tasks_dirs: Sequence[Path] = (), data_dirs: Sequence[Path] = (), examples: int = 5,
) -> RescoreSummary:
    """Rescore every item of ``run_id`` with its metrics plus ``metrics``; store the result if ``write``."""
    config = store.run_config(run_id)
    split = config.get("spec", {}).get("split", "test")
    tasks = _load_tasks(config, tasks_dirs, data_dirs)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    for name in metrics:
        metric = get_metric(name, "--metric")
        if metric.written_by:
            raise HarnessError(f"metric '{name}' cannot be recomputed from responses; `{metric.written_by}` writes it (rescore keeps stored values)")
        for cell in cells.values():
            if cell.task_type not in metric.task_types:
                raise HarnessError(f"metric '{name}' does not apply to task '{cell.task}' ({cell.task_type}); it is for: {', '.join(metric.task_types)}")
    sources: dict[str, str] = {}
    items_by_task: dict[str, dict[str, Item]] = {}
    filters_by_task: dict[str, list[Any] | None] = {}
    for cell in cells.values():
        if cell.task in sources:
            continue
        task = tasks.get(cell.task)
        if task is None:
            sources[cell.task] = "stored responses only (task not found: stored target and extracted answers are used)"
            items_by_task[cell.task], filters_by_task[cell.task] = {}, None
            continue
        try:
            items_by_task[cell.task] = {item.id: item for item in task.items(split)}
            sources[cell.task] = f"{task.yaml_path}"
        except HarnessError as exc:
            items_by_task[cell.task] = {}
            sources[cell.task] = f"{task.yaml_path} (data unavailable: {exc}; stored targets used)"
        filters_by_task[cell.task] = [build_filter(step) for step in task.spec.filters]

    counts: dict[str, list[int]] = {}
    added: set[str] = set()
    updates: list[tuple[str, str, dict[str, float], str | None]] = []
    changed_examples: list[dict[str, Any]] = []
    rows = store.items([run_id])
    for row in rows:
        cell = cells[row.cell_id]
        old = row.scores
        # metrics written by a later pass (acc_calibrated) are kept as stored, never recomputed
        names = [n for n in dict.fromkeys([*cell.metrics, *old, *metrics]) if not get_metric(n).written_by]
        target = row.target if isinstance(row.target, int) else tuple(row.target)
        base = items_by_task[cell.task].get(row.item_id)
        item = dataclasses.replace(base, target=target) if base is not None else _stored_item(row, target)
        results = row.results()
        continuations = row.continuations or []
        filters = filters_by_task[cell.task]
        if filters is None and item.choices is None:
            text = results[0].text if results and hasattr(results[0], "text") else ""
            outcome = Outcome(item=item, text=text, extracted=row.extracted)
        else:
            outcome = build_outcome(item, continuations, results, filters or [])
        new = score_outcome(outcome, names)
        for name in names:
            if name in old:
                tally = counts.setdefault(name, [0, 0])
                tally[0] += 1
                if _same(old[name], new[name]):
                    tally[1] += 1
                elif len(changed_examples) < examples:
                    changed_examples.append({"cell_id": cell.cell_id, "item_id": row.item_id, "metric": name,
                                             "stored": old[name], "rescored": new[name]})
            else:
                added.add(name)
        updates.append((row.cell_id, row.item_id, {**old, **new}, outcome.extracted))
    if write and updates:
        store.update_scores(run_id, updates)

        export_run(store, run_id)
    checks = [MetricCheck(name, total, same) for name, (total, same) in counts.items()]
    return RescoreSummary(run_id, len(rows), checks, sorted(added), sources, write and bool(updates), changed_examples)
