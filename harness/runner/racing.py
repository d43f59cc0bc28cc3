"""``harness run --until-decided``: race each task's cells and stop evaluating the ones that are confidently worse.

Per task, every cell is scored on the same items in one seeded random order (``seeded_order(n, run seed)``
over the task's evaluated items), ``round`` items per cell per round. After each round
``harness.stats.racing.Race`` updates an anytime-valid confidence sequence for every pair of cells and
eliminates each cell some other cell is confidently better than; eliminated cells get no further
requests. The task's race stops when one cell is left (winner), when the survivors are within
``margin`` of each other (equivalent), when a budget is reached (items per cell, or the task's
requests or tokens, checked after each round) or when every item was scored (exhausted).

The sequences are the without-replacement ones for the N evaluated items (``population=N``), so
"better" means better on these N items: the answer the full run would give. The race scores each
item by the task's main metric (its first); an unscorable item (NaN) counts as the metric's worst
value, as ``compare``'s default ``unscorable="wrong"`` policy does, so every score lies within the
metric's bounds (a metric without known bounds, or a corpus-level one, cannot be raced:
``check_race`` refuses it before anything runs).

Resuming: the race is a deterministic function of the scores in the seeded order and the round
size, so an interrupted run (same command) replays the rounds from its stored items, evaluates only
what is missing and reaches the state it would have reached uninterrupted. After each round the state
(every cell's status, the round and items at which it stopped, the cell that beat it and the CS of the
difference, the guarantee) is written to the store (``Store.write_race``). Budgets count every request
and token of the race's items whether the response cache or the model answered, so they replay too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends import Backend
from harness.core.errors import HarnessError
from harness.runner.evaluate import CacheCounts, CellEvaluator, stored_cell
from harness.runner.planning import Cell
from harness.runner.spec import RaceSpec
from harness.scoring import Metric, get_metric, score_bounds
from harness.stats.racing import Race, RaceState, seeded_order
from harness.store import RaceCell, Store, StoredRace


@dataclass(frozen=True)
class RaceMetric:
    """What a task's race scores by: the main metric, its direction, bounds and the value of an unscorable item."""

    name: str
    higher_is_better: bool
    bounds: tuple[float, float]
    worst: float


def race_metric(cell: Cell) -> RaceMetric:
    """The task's main metric as the race uses it; a HarnessError naming the task file when it cannot be raced."""
    task = cell.task
    name = task.spec.metrics[0]
    metric: Metric = get_metric(name, f"{task.yaml_path}: field 'metrics'")
    where = f"--until-decided: task '{task.name}' ({task.yaml_path}): its main metric '{name}' (the first of 'metrics:')"
    fix = ("list a per-item metric with known bounds first in the task's 'metrics:' (0/1 metrics such as acc, acc_norm, exact_match; "
           "or squad_f1, rouge1, mc2 ...), or run without --until-decided")
    if metric.aggregation == "corpus":
        raise HarnessError(f"{where} is a corpus-level metric (the cell's score is not a mean of item scores), so cells cannot be raced "
                           f"item by item: {fix}")
    if metric.written_by is not None:
        raise HarnessError(f"{where} is written by `{metric.written_by}` after a run, so no item has it while the race runs: {fix}")
    bounds = score_bounds(metric)
    if bounds is None:
        raise HarnessError(f"{where} has no known bounds (the race's confidence sequences need the range every item score lies in): {fix}")
    worst = metric.worst if metric.worst is not None else (bounds[0] if metric.higher_is_better else bounds[1])
    return RaceMetric(name, metric.higher_is_better, (float(bounds[0]), float(bounds[1])), float(worst))


def task_groups(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """The cells of each task, in plan order: each task is one race."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.task.name, []).append(cell)
    return groups


def check_race(race: RaceSpec, cells: Sequence[Cell]) -> None:
    """Refuse, before anything runs, a task that cannot be raced: one cell, or a main metric without known per-item bounds."""
    for name, group in task_groups(cells).items():
        if len(group) < 2:
            raise HarnessError(f"--until-decided races the cells of each task, but task '{name}' has one cell ({group[0].label}): "
                               "give it more prompt variants, shot counts, selectors or models, or run without --until-decided")
        metric = race_metric(group[0])
        if race.margin is not None and race.margin >= metric.bounds[1] - metric.bounds[0]:
            raise HarnessError(f"--margin {race.margin:g}: task '{name}''s metric '{metric.name}' lies in [{metric.bounds[0]:g}, "
                               f"{metric.bounds[1]:g}], so every pair of cells is within that margin; give it in metric units, "
                               "e.g. --margin 0.02 for 2 points of accuracy")


@dataclass
class Spent:
    """What a task's race has used: item scores, requests and tokens, over every cell (cache hits included)."""

    items: int = 0
    requests: int = 0
    tokens: int = 0


def race_tasks(
    race: RaceSpec, cells: Sequence[Cell], store: Store, run_id: str, backends: Mapping[str, Callable[[], Backend]],
    identities: Mapping[str, dict[str, Any]], counts: CacheCounts, advance: Callable[[int], Any], chunk_items: int, seed: int,
    log: Callable[[str], None] | None = None,
) -> tuple[list[StoredRace], int]:
    """Race each task's cells into ``run_id``; returns each task's final race record and the items written.

    ``backends`` maps a model label to the function that loads (or returns) its backend, ``identities``
    a model label to its identity (the cache key's)."""
    results: list[StoredRace] = []
    written = 0
    for task, group in task_groups(cells).items():
        outcome, items = _race_task(race, task, group, store, run_id, backends, identities, counts, advance, chunk_items, seed)
        results.append(outcome)
        written += items
        if log is not None:
            log(f"race {task}: {decision_line(outcome)}")
    return results, written


def _race_task(
    race: RaceSpec, task: str, group: list[Cell], store: Store, run_id: str, backends: Mapping[str, Callable[[], Backend]],
    identities: Mapping[str, dict[str, Any]], counts: CacheCounts, advance: Callable[[int], Any], chunk_items: int, seed: int,
) -> tuple[StoredRace, int]:
    metric = race_metric(group[0])
    items = group[0].items  # the cells of a task share its evaluated items
    n = len(items)
    order = [int(p) for p in seeded_order(n, seed)]
    cells = {cell.cell_id: cell for cell in group}
    evaluators: dict[str, CellEvaluator] = {}
    stored: dict[str, dict[str, tuple[float, int, int]]] = {}  # cell -> item id -> (race score, requests, tokens)
    for cell in group:
        identity = identities[cell.model.label]
        store.add_cell(stored_cell(cell, run_id, identity))
        evaluators[cell.cell_id] = CellEvaluator(cell, store, run_id, backends[cell.model.label], counts, json.dumps(identity, sort_keys=True),
                                                 lambda k: None, chunk_items)
        stored[cell.cell_id] = {c.item_id: (_race_score(c.scores, metric), c.requests, c.n_tokens)
                                for c in store.item_costs(run_id, cell.cell_id)}
    contest = Race(list(cells), alpha=race.alpha, margin=race.margin, direction=1 if metric.higher_is_better else -1, bounds=metric.bounds,
                   population=n, max_items=race.items)
    spent = Spent()
    written = 0
    done = 0  # items of the order every survivor has been scored on
    settled: set[str] = set()  # cells whose remaining items the progress bar has been told about
    state = contest.state
    store.write_race(race_record(run_id, task, race, metric, state, spent, n, seed))  # round 0: the run is racing
    while not state.stopped:
        size = min(race.round, n - done, (race.items - done) if race.items is not None else n)
        block = order[done : done + size]
        scores: dict[str, list[float]] = {}
        for cell_id in state.survivors:
            cell, have = cells[cell_id], stored[cell_id]
            wanted = [(pos, items[pos]) for pos in block]
            missing = [(pos, item) for pos, item in wanted if item.id not in have]
            advance(len(wanted) - len(missing))
            for rec in evaluators[cell_id].evaluate(missing):
                have[rec.item_id] = (_race_score(rec.scores, metric), len(rec.response), rec.n_tokens)
                advance(1)
                written += 1
            scores[cell_id] = [have[item.id][0] for _, item in wanted]
            spent.items += len(wanted)
            spent.requests += sum(have[item.id][1] for _, item in wanted)
            spent.tokens += sum(have[item.id][2] for _, item in wanted)
        done += size
        try:
            state = contest.update(scores)
        except ValueError as exc:  # a score outside the metric's declared bounds (a plugin metric that misdeclares them)
            raise HarnessError(f"--until-decided: task '{task}': metric '{metric.name}': {exc}") from None
        if not state.stopped and ((race.requests is not None and spent.requests >= race.requests)
                                  or (race.tokens is not None and spent.tokens >= race.tokens)):
            state = contest.stop("budget")
        for c in state.cells:  # the bar counts a stopped cell's unscored items as settled
            if (c.status == "eliminated" or state.stopped) and c.cell not in settled:
                settled.add(c.cell)
                advance(n - c.items)
        store.write_race(race_record(run_id, task, race, metric, state, spent, n, seed))
    return race_record(run_id, task, race, metric, state, spent, n, seed), written


def _race_score(scores: Mapping[str, float], metric: RaceMetric) -> float:
    value = float(scores.get(metric.name, math.nan))
    return metric.worst if math.isnan(value) else value  # unscorable: the metric's worst value, as compare's default policy scores it


def race_record(run_id: str, task: str, race: RaceSpec, metric: RaceMetric, state: RaceState, spent: Spent, population: int,
                seed: int) -> StoredRace:
    """The race's state as the store keeps it."""
    cells = tuple(
        RaceCell(c.cell, c.status, c.round, c.items, c.mean, c.beaten_by, c.difference, c.reason) for c in state.cells
    )
    budget = {"items": race.items, "requests": race.requests, "tokens": race.tokens}
    return StoredRace(
        run_id=run_id, task=task, metric=metric.name, higher_is_better=metric.higher_is_better, bounds=metric.bounds,
        worst=metric.worst, alpha=state.alpha, pair_alpha=state.pair_alpha, margin=state.margin, round_items=race.round,
        budget=budget, population=population, seed=seed, reason=state.reason, rounds=state.round, evaluations=state.evaluations,
        requests=spent.requests, tokens=spent.tokens, guarantee=state.guarantee(), method=state.method, cells=cells,
    )


def decision_line(race: StoredRace) -> str:
    """One line: the race's decision and what it cost."""
    eliminated = sum(1 for c in race.cells if c.status == "eliminated")
    what = {
        "winner": "one cell left (winner)", "equivalent": f"the survivors are within ±{race.margin or 0:g} (equivalent)",
        "budget": "stopped at its budget, undecided", "exhausted": "every item scored, undecided", "racing": "still racing",
    }.get(race.reason, race.reason)
    full = race.population * len(race.cells)
    return (f"{what} after {race.rounds} round(s); {eliminated} of {len(race.cells)} cells eliminated; "
            f"{race.evaluations} of {full} item evaluations ({race.evaluations / full:.0%}), {race.requests} requests")
