"""Turn stored items into per-cell summaries, rankings with rank groups, prompt spread and
item-level diffs (data only; report.py and html_report.py present it).

Ranking: per task, cells are ordered by the main metric in its declared direction; every
other cell is tested against the best on the items both saw (McNemar for 0/1 metrics, a
paired permutation test otherwise), the p-values are Holm-corrected, and cells whose
difference from the best is not significant share its rank group. The next group is led
by the best remaining cell, tested the same way against the rest.
"""

from __future__ import annotations

import json
import statistics
import sys
import types
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from harness.aggregates import cell_interval
from harness.errors import HarnessError
from harness.paired import PairedResult, compare_scores
from harness.scoring import get_metric
from harness.stats import DEFAULT_RESAMPLES, Interval, holm, kendall_tau, mean_interval
from harness.store import CellRecord, Store


@dataclass(frozen=True)
class CellSummary:
    cell: CellRecord
    metric: str
    higher_is_better: bool
    interval: Interval
    scores: dict[str, float]  # item id -> score (the pairing key for comparisons)
    kind: str = "binary"

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def setting(self) -> str:
        """Everything but the prompt: the unit over which prompt spread is measured."""
        selector = "" if self.cell.selector == "none" else f" {self.cell.selector}"
        return f"{self.cell.model} · {self.cell.shots}-shot{selector}"

    @property
    def label(self) -> str:
        return f"{self.cell.prompt} · {self.setting}"


def cell_scores(store: Store, run_ids: Sequence[str]) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(run id, cell id) -> item id -> metric -> score."""
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(dict)
    for row in store.items(run_ids):
        table[(row["run_id"], row["cell_id"])][row["item_id"]] = json.loads(row["scores_json"])
    return table


def summarize(
    store: Store, run_ids: Sequence[str], metric: str | None = None, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> list[CellSummary]:
    """One summary per cell, on ``metric`` or each cell's main (first) metric."""
    scores = cell_scores(store, run_ids)
    out = []
    for cell in store.cells(run_ids):
        name = metric or cell.metrics[0]
        definition = get_metric(name, "--metric")
        items = scores.get((cell.run_id, cell.cell_id), {})
        values = {item: s[name] for item, s in items.items() if name in s}
        if definition.corpus is not None:  # BLEU, macro-F1 ...: a corpus score, item scores kept for pairing
            interval = cell_interval(store, cell, definition, list(values.values()), confidence, resamples, seed)
        else:
            interval = mean_interval(list(values.values()), definition.kind == "binary", confidence, seed=seed, resamples=resamples)
        out.append(CellSummary(cell, name, definition.higher_is_better, interval, values, definition.kind))
    return out


def _order_key(s: CellSummary) -> tuple[float, str, int, str, str]:
    mean = s.interval.mean if s.interval.mean == s.interval.mean else float("-inf") if s.higher_is_better else float("inf")
    return (-mean if s.higher_is_better else mean, s.cell.prompt, s.cell.shots, s.cell.model, s.cell.cell_id)


def ranked(summaries: Sequence[CellSummary]) -> dict[str, list[CellSummary]]:
    """Per task, cells best first by their metric's own direction."""
    by_task: dict[str, list[CellSummary]] = defaultdict(list)
    for s in summaries:
        by_task[s.cell.task].append(s)
    return {task: sorted(cells, key=_order_key) for task, cells in by_task.items()}


# -- ranking with rank groups ----------------------------------------------------------
@dataclass(frozen=True)
class RankedCell:
    summary: CellSummary
    rank: int  # position, 1 = best
    group: int  # rank group: cells not significantly different from their group's leader
    vs_best: PairedResult | None  # this cell minus the best; None for the best itself
    p_holm: float | None  # Holm-corrected p-value of vs_best


@dataclass(frozen=True)
class TaskRanking:
    task: str
    metric: str
    higher_is_better: bool
    kind: str
    cells: list[RankedCell]


@dataclass(frozen=True)
class Spread:
    """How much the prompt variant alone moves the score, for one (task, model, shots, selector)."""

    task: str
    setting: str
    model: str
    shots: int
    selector: str
    metric: str
    n_variants: int
    min: float
    median: float
    max: float
    best_prompt: str
    worst_prompt: str

    @property
    def range(self) -> float:
        return self.max - self.min


@dataclass(frozen=True)
class Stability:
    """Kendall tau of the prompt variants' order under two settings (models, shots, draws)."""

    task: str
    setting_a: str
    setting_b: str
    n_variants: int
    tau: float


@dataclass(frozen=True)
class Comparison:
    runs: list[str]
    rankings: list[TaskRanking]
    spreads: list[Spread]
    stability: list[Stability]
    alpha: float
    confidence: float
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per cell (for JSON, CSV and DataFrames)."""
        out = []
        spread = {(sp.task, sp.setting): sp for sp in self.spreads}
        labels = setting_labels([rc.summary for ranking in self.rankings for rc in ranking.cells])
        for ranking in self.rankings:
            for rc in ranking.cells:
                s, c, vs = rc.summary, rc.summary.cell, rc.vs_best
                sp = spread.get((ranking.task, labels[(c.run_id, c.cell_id)]))
                out.append({
                    "task": ranking.task, "rank": rc.rank, "group": rc.group, "run_id": c.run_id, "cell_id": c.cell_id,
                    "prompt": c.prompt, "shots": c.shots, "selector": c.selector, "model": c.model, "metric": s.metric,
                    "higher_is_better": s.higher_is_better, "n": s.n, "mean": s.interval.mean,
                    "ci_low": s.interval.low, "ci_high": s.interval.high, "ci_method": s.interval.method,
                    "diff_vs_best": None if vs is None else vs.diff.mean,
                    "diff_ci_low": None if vs is None else vs.diff.low, "diff_ci_high": None if vs is None else vs.diff.high,
                    "p_vs_best": None if vs is None else vs.p_value, "p_holm": rc.p_holm,
                    "test": None if vs is None else vs.test, "n_paired": None if vs is None else vs.n,
                    "wins": None if vs is None else vs.wins, "ties": None if vs is None else vs.ties,
                    "losses": None if vs is None else vs.losses,
                    # spread of this cell's model / shots / selector across prompt variants
                    "variants": None if sp is None else sp.n_variants, "spread_min": None if sp is None else sp.min,
                    "spread_median": None if sp is None else sp.median, "spread_max": None if sp is None else sp.max,
                    "spread_range": None if sp is None else sp.range,
                })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs, "alpha": self.alpha, "confidence": self.confidence, "cells": self.rows(),
            "spread": [{**s.__dict__, "range": s.range} for s in self.spreads],
            "rank_stability": [s.__dict__ for s in self.stability], "warnings": self.warnings,
        }


def rank_task(
    cells: Sequence[CellSummary], alpha: float = 0.05, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[TaskRanking, list[str]]:
    """Rank one task's cells and assign rank groups (see the module docstring)."""
    order = sorted(cells, key=_order_key)
    best = order[0]
    metrics = {s.metric for s in order}
    if len(metrics) > 1:
        raise HarnessError(f"task '{best.cell.task}': cells are scored by different metrics ({', '.join(sorted(metrics))}); pass --metric")
    warnings: list[str] = []

    def against(leader: CellSummary, others: Sequence[CellSummary]) -> tuple[list[PairedResult], list[float]]:
        results = [compare_scores(o.scores, leader.scores, o.kind, o.higher_is_better, resamples=resamples, seed=seed) for o in others]  # type: ignore[arg-type]
        return results, holm([r.p_value for r in results])

    vs_best, p_best = against(best, order[1:])
    for s, r in zip(order[1:], vs_best):
        if r.dropped:
            dropped = ", ".join(f"{v} {k}" for k, v in r.dropped.items())
            warnings.append(f"{best.cell.task}: {s.label} vs best paired on {r.n} items (dropped: {dropped})")
    groups: dict[str, int] = {}
    remaining = list(order)
    group = 0
    while remaining:
        group += 1
        leader, rest = remaining[0], remaining[1:]
        results, adjusted = (vs_best, p_best) if leader is best else against(leader, rest)
        groups[leader.cell.cell_id + leader.cell.run_id] = group
        still = []
        for s, p in zip(rest, adjusted):
            if p >= alpha:
                groups[s.cell.cell_id + s.cell.run_id] = group
            else:
                still.append(s)
        remaining = still
    ranked_cells = [RankedCell(best, 1, 1, None, None)]
    for position, (s, r, p) in enumerate(zip(order[1:], vs_best, p_best), start=2):
        ranked_cells.append(RankedCell(s, position, groups[s.cell.cell_id + s.cell.run_id], r, p))
    ranking = TaskRanking(best.cell.task, best.metric, best.higher_is_better, best.kind, ranked_cells)
    underpowered = [rc.vs_best for rc in ranked_cells[1:] if rc.vs_best and rc.vs_best.warning and rc.group == 1]
    if underpowered:
        def span(values: list[float], digits: int) -> str:
            low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
            return low if low == high else f"{low}-{high}"

        warnings.append(
            f"{ranking.task}: {len(underpowered)} cell(s) share the best's group only for lack of data: with "
            f"n={span([r.n for r in underpowered], 0)} paired items, their differences from the best "
            f"({span([100 * abs(r.diff.mean) for r in underpowered], 1)} points) would need about "
            f"{span([r.items_needed for r in underpowered], 0)} items to detect with 80% power"
        )
    return ranking, warnings


def setting_labels(summaries: Sequence[CellSummary]) -> dict[tuple[str, str], str]:
    """(run id, cell id) -> setting label; the run is added when runs repeat a setting
    (e.g. other seeds = other few-shot draws), so repeats count as settings of their own."""
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for s in summaries:
        seen[(s.cell.task, s.setting, s.cell.prompt)].add(s.cell.run_id)
    repeated = {task for (task, _, _), runs in seen.items() if len(runs) > 1}
    return {
        (s.cell.run_id, s.cell.cell_id): f"{s.setting} · run {s.cell.run_id}" if s.cell.task in repeated else s.setting
        for s in summaries
    }


def spreads(summaries: Sequence[CellSummary]) -> list[Spread]:
    """Min / median / max across prompt variants for each (task, model, shots, selector)."""
    labels = setting_labels(summaries)
    groups: dict[tuple[str, str], dict[str, CellSummary]] = defaultdict(dict)
    for s in summaries:
        groups[(s.cell.task, labels[(s.cell.run_id, s.cell.cell_id)])][s.cell.prompt] = s
    out = []
    for (task, setting), by_prompt in groups.items():
        scored = {p: s for p, s in by_prompt.items() if s.interval.mean == s.interval.mean}
        if not scored:
            continue
        any_cell = next(iter(scored.values()))
        values = [s.interval.mean for s in scored.values()]
        hib = any_cell.higher_is_better
        best = max(scored, key=lambda p: scored[p].interval.mean if hib else -scored[p].interval.mean)
        worst = min(scored, key=lambda p: scored[p].interval.mean if hib else -scored[p].interval.mean)
        out.append(Spread(task, setting, any_cell.cell.model, any_cell.cell.shots, any_cell.cell.selector, any_cell.metric,
                          len(values), min(values), float(statistics.median(values)), max(values), best, worst))
    return out


def stability(summaries: Sequence[CellSummary]) -> list[Stability]:
    """Kendall tau between the variant orders of every two settings of a task (>= 2 shared variants)."""
    labels = setting_labels(summaries)
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for s in summaries:
        table[s.cell.task][labels[(s.cell.run_id, s.cell.cell_id)]][s.cell.prompt] = s.interval.mean
    out = []
    for task, settings in table.items():
        for a, b in combinations(sorted(settings), 2):
            shared = sorted(settings[a].keys() & settings[b].keys())
            if len(shared) >= 2:
                tau = kendall_tau([settings[a][p] for p in shared], [settings[b][p] for p in shared])
                out.append(Stability(task, a, b, len(shared), tau))
    return out


def compare_runs(
    store: Store, run_ids: Sequence[str], metric: str | None = None, *, alpha: float = 0.05, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, tasks: Sequence[str] | None = None,
) -> Comparison:
    """Everything ``harness compare`` shows, as data."""
    summaries = summarize(store, run_ids, metric, confidence, resamples, seed)
    if tasks:
        summaries = [s for s in summaries if s.cell.task in tasks]
    summaries = [s for s in summaries if s.n > 0] or summaries
    if not summaries:
        raise HarnessError(f"runs {', '.join(run_ids)}: no cells with scored items to compare")
    rankings, warnings = [], []
    for cells in ranked(summaries).values():
        ranking, notes = rank_task(cells, alpha, resamples, seed)
        rankings.append(ranking)
        warnings.extend(notes)
    return Comparison(list(run_ids), rankings, spreads(summaries), stability(summaries), alpha, confidence, warnings)


# -- item-level diff ---------------------------------------------------------------------
@dataclass(frozen=True)
class ItemDiff:
    item_id: str
    score_a: float
    score_b: float
    prompt_a: Any
    prompt_b: Any
    response_a: str
    response_b: str
    target: Any


def _answer(row: Any) -> str:
    """A readable answer from a stored item: the chosen continuation, or the generated text."""
    responses = json.loads(row["response_json"])
    if row["continuations_json"]:
        continuations = json.loads(row["continuations_json"])
        logprobs = [r.get("logprob", float("-inf")) for r in responses]
        if logprobs:
            best = max(range(len(logprobs)), key=lambda i: logprobs[i])
            return f"{continuations[best].strip()} (choice {best})"
        return ""
    text = responses[0].get("text", "") if responses else ""
    return f"{text!r} -> {row['extracted']!r}" if row["extracted"] is not None else repr(text)


def _target(row: Any) -> Any:
    target = json.loads(row["target_json"])
    if row["continuations_json"] and isinstance(target, int):
        continuations = json.loads(row["continuations_json"])
        return f"{continuations[target].strip()} (choice {target})" if 0 <= target < len(continuations) else target
    return target


def item_diff(store: Store, a: CellRecord, b: CellRecord, metric: str | None = None) -> tuple[str, list[ItemDiff], int]:
    """Items (in both cells) where the two cells' scores differ on ``metric``; also the paired count."""
    name = metric or a.metrics[0]
    rows: dict[str, dict[str, Any]] = {a.cell_id + a.run_id: {}, b.cell_id + b.run_id: {}}
    for row in store.items(sorted({a.run_id, b.run_id})):
        key = row["cell_id"] + row["run_id"]
        if key in rows:
            rows[key][row["item_id"]] = row
    ra, rb = rows[a.cell_id + a.run_id], rows[b.cell_id + b.run_id]
    shared = [i for i in ra if i in rb]
    out = []
    for item in shared:
        sa = json.loads(ra[item]["scores_json"]).get(name, float("nan"))
        sb = json.loads(rb[item]["scores_json"]).get(name, float("nan"))
        if sa != sb and not (sa != sa and sb != sb):
            out.append(ItemDiff(item, sa, sb, json.loads(ra[item]["prompt_json"]), json.loads(rb[item]["prompt_json"]),
                                _answer(ra[item]), _answer(rb[item]), _target(ra[item])))
    return name, out, len(shared)


def find_cell(store: Store, ref: str, run_ids: Sequence[str] | None = None) -> CellRecord:
    """A cell by id or unique id prefix, optionally written RUN:CELL, within ``run_ids`` or all runs."""
    run_part, sep, cell_part = ref.rpartition(":")
    runs = [store.resolve_run(run_part)] if sep else list(run_ids or [r["id"] for r in store.runs()])
    matches = [c for c in store.cells(runs) if c.cell_id.startswith(cell_part)] if runs else []
    if len(matches) != 1:
        problem = "no cell" if not matches else f"{len(matches)} cells (in runs {', '.join(sorted({m.run_id for m in matches}))})"
        raise HarnessError(f"{store.path}: {problem} matching '{ref}'. List cells with: harness show RUN; write RUN:CELL to disambiguate")
    return matches[0]


class _CallableModule(types.ModuleType):
    """Lets ``harness.compare(db, runs=...)`` (the API) and ``harness.compare`` (this module) coexist."""

    def __call__(self, *args: Any, **kwargs: Any) -> Comparison:
        from harness.api import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
