"""Everything ``harness compare`` shows, as data: ranked cells with the possibly-best set and
verdicts (harness/analysis/ranking.py), prompt spread, and rank stability of prompt variants with a CI;
plus item-level diffs. report.py and html_report.py present it.

Guarantees (each measured by a seeded simulation in tests/stats/test_simulation.py, see docs/compare.md):
the possibly-best set misses the true best with probability ≤ α; a "worse" verdict is a false
claim with probability ≤ α across all pairs of a task; an "equivalent ±m" verdict is a false claim
with probability ≤ α across the cells of a task.
"""

from __future__ import annotations

import difflib
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from harness.analysis.degenerate import degenerate_cells
from harness.analysis.ranking import RankedCell, TaskRanking, order_key, rank_task
from harness.analysis.summaries import CellSummary, Unscorable, aligned, cell_scores, describe_unscorable, json_safe, summarize
from harness.core.errors import HarnessError
from harness.runner.calibration import CALIBRATED_METRIC
from harness.stats.across_prompts import AcrossPrompts, across_prompts, tau_interval
from harness.stats.basics import DEFAULT_RESAMPLES, kendall_tau
from harness.store import RaceCell, Store, StoredCell, StoredItem, StoredRace

__all__ = ["CellSummary", "Comparison", "ModelContrast", "RankedCell", "Spread", "Stability", "TaskRanking", "answer_text", "cell_scores", "compare_runs",
           "find_cell", "item_diff", "ranked", "spreads", "stability", "summarize", "target_text"]


def ranked(summaries: Sequence[CellSummary]) -> dict[str, list[CellSummary]]:
    """Per task, cells best first by their metric's own direction."""
    by_task: dict[str, list[CellSummary]] = defaultdict(list)
    for s in summaries:
        by_task[s.cell.task].append(s)
    return {task: sorted(cells, key=order_key) for task, cells in by_task.items()}


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
    """Kendall tau of the prompt variants' order under two settings (models, shots, draws), with a
    percentile bootstrap CI over the items both settings share (the variants are fixed)."""

    task: str
    setting_a: str
    setting_b: str
    n_variants: int
    tau: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_items: int = 0


@dataclass(frozen=True)
class ModelContrast:
    """Model A − model B over the prompt variants both ran in one setting (shots, selector):
    the across-prompt verdict of harness/stats/across_prompts.py, for model-vs-model comparisons."""

    task: str
    model_a: str
    model_b: str
    setting: str  # shots and selector
    result: AcrossPrompts

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {"task": self.task, "model_a": self.model_a, "model_b": self.model_b, "setting": self.setting,
                "variants": {v.name: v.diff for v in r.variants}, "items": r.items, "diff": r.mean, "diff_ci_low": r.low,
                "diff_ci_high": r.high, "p_value": r.p_value, "df": r.df, "worst": r.worst.name, "best": r.best.name,
                "kendall_tau": json_safe(r.tau), "tau_ci_low": json_safe(r.tau_low), "tau_ci_high": json_safe(r.tau_high),
                "method": r.method}


@dataclass(frozen=True)
class Comparison:
    runs: list[str]
    rankings: list[TaskRanking]
    spreads: list[Spread]
    stability: list[Stability]
    alpha: float
    confidence: float
    warnings: list[str] = field(default_factory=list)
    margin: float | None = None
    unscorable: str = "wrong"
    models: list[ModelContrast] = field(default_factory=list)
    races: list[StoredRace] = field(default_factory=list)  # the --until-decided runs' races, one per task (harness/runner/racing.py)

    def race_of(self, task: str) -> list[StoredRace]:
        """The races of ``task`` among the compared runs."""
        return [r for r in self.races if r.task == task]

    def raced(self, cell: StoredCell) -> RaceCell | None:
        """Where the cell stood when its race stopped (None: not raced)."""
        for race in self.races:
            if race.run_id == cell.run_id and race.task == cell.task:
                return race.cell(cell.cell_id)
        return None

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per cell (for JSON, CSV and DataFrames)."""
        out = []
        spread = {(sp.task, sp.setting): sp for sp in self.spreads}
        labels = setting_labels([rc.summary for ranking in self.rankings for rc in ranking.cells])
        for ranking in self.rankings:
            for rc in ranking.cells:
                s, c, vs = rc.summary, rc.summary.cell, rc.vs_best
                sp = spread.get((ranking.task, labels[(c.run_id, c.cell_id)]))
                res = rc.verdict.resolution
                raced = self.raced(c)
                race = next((r for r in self.race_of(ranking.task) if r.run_id == c.run_id), None) if raced is not None else None
                out.append({
                    "task": ranking.task, "rank": rc.rank, "may_be_best": rc.may_be_best, "verdict": rc.verdict.code,
                    "verdict_text": rc.verdict.text, "verdict_detail": rc.verdict.detail,
                    "beaten_by": None if rc.beaten_by is None else rc.beaten_by.cell.cell_id,
                    "run_id": c.run_id, "cell_id": c.cell_id,
                    "prompt": c.prompt, "shots": c.shots, "selector": c.selector, "model": c.model, "metric": s.metric,
                    "higher_is_better": s.higher_is_better, "n": s.n, "unscorable": s.unscorable,
                    "unscorable_policy": s.unscorable_policy, "missing": s.missing, "n_planned": s.cell.n_planned, "mean": s.interval.mean,
                    "ci_low": s.interval.low, "ci_high": s.interval.high, "ci_method": s.interval.method,
                    "diff_vs_best": None if vs is None else vs.diff.mean,
                    "diff_ci_low": None if vs is None else vs.diff.low, "diff_ci_high": None if vs is None else vs.diff.high,
                    "p_vs_best": None if vs is None else vs.p_value, "p_adjusted": rc.p_adjusted,
                    "test": None if vs is None else vs.test, "n_paired": None if vs is None else vs.n,
                    "wins": None if vs is None else vs.wins, "ties": None if vs is None else vs.ties,
                    "losses": None if vs is None else vs.losses,
                    "mde": None if res is None else res.mde, "items_needed": None if res is None else res.items_needed,
                    "p_equivalence": rc.verdict.p_equivalence,
                    # spread of this cell's model / shots / selector across prompt variants
                    "variants": None if sp is None else sp.n_variants, "spread_min": None if sp is None else sp.min,
                    "spread_median": None if sp is None else sp.median, "spread_max": None if sp is None else sp.max,
                    "spread_range": None if sp is None else sp.range,
                    # --until-decided: the race's status of the cell, the round and items at which it stopped, who beat it
                    "race_status": None if raced is None else raced.status, "race_round": None if raced is None else raced.round,
                    "race_items": None if raced is None else raced.items, "race_beaten_by": None if raced is None else raced.beaten_by,
                    "race_reason": None if race is None else race.reason, "race_guarantee": None if race is None else race.guarantee,
                })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs, "alpha": self.alpha, "confidence": self.confidence, "margin": self.margin,
            "unscorable": self.unscorable, "cells": self.rows(),
            "best_sets": [{"task": r.task, "method": r.method, "alpha": r.alpha, "n": r.n, "units": r.units,
                           "clustered": r.clustered, "resamples": r.resamples,
                           "cells": [rc.summary.cell.cell_id for rc in r.best_set], "pairs": r.pairs()} for r in self.rankings],
            "spread": [{**s.__dict__, "range": s.range} for s in self.spreads],
            "rank_stability": [{k: json_safe(v) for k, v in s.__dict__.items()} for s in self.stability], "across_prompts": [m.to_dict() for m in self.models],
            "races": [race_dict(r, self.rankings) for r in self.races],
            "warnings": self.warnings,
        }


def race_dict(race: StoredRace, rankings: Sequence[TaskRanking] = ()) -> dict[str, Any]:
    """A race as ``--json`` shows it: its settings, decision, guarantee and every cell's outcome (labels from ``rankings``)."""
    labels = {(rc.summary.cell.run_id, rc.summary.cell.cell_id): rc.summary.label for r in rankings for rc in r.cells}
    return {
        "run_id": race.run_id, "task": race.task, "metric": race.metric, "higher_is_better": race.higher_is_better,
        "bounds": list(race.bounds), "unscorable_as": race.worst, "alpha": race.alpha, "pair_alpha": race.pair_alpha, "margin": race.margin,
        "round_items": race.round_items, "budget": race.budget, "population": race.population, "seed": race.seed,
        "reason": race.reason, "decided": race.decided, "rounds": race.rounds, "evaluations": race.evaluations,
        "full_evaluations": race.population * len(race.cells), "requests": race.requests, "tokens": race.tokens,
        "guarantee": race.guarantee, "method": race.method,
        "cells": [{"cell_id": c.cell_id, "label": labels.get((race.run_id, c.cell_id)), "status": c.status, "round": c.round, "items": c.items,
                   "mean": json_safe(c.mean), "beaten_by": c.beaten_by, "beaten_by_label": labels.get((race.run_id, c.beaten_by or "")),
                   "difference": None if c.difference is None else list(c.difference), "reason": c.reason} for c in race.cells],
    }


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


def stability(summaries: Sequence[CellSummary], confidence: float = 0.95, seed: int = 0) -> list[Stability]:
    """Kendall tau between the variant orders of every two settings of a task (>= 2 shared variants),
    with a bootstrap CI over the items every involved cell shares (mean metrics; corpus metrics get
    the point value only)."""
    labels = setting_labels(summaries)
    table: dict[str, dict[str, dict[str, CellSummary]]] = defaultdict(lambda: defaultdict(dict))
    for s in summaries:
        table[s.cell.task][labels[(s.cell.run_id, s.cell.cell_id)]][s.cell.prompt] = s
    out = []
    for task, settings in table.items():
        for a, b in combinations(sorted(settings), 2):
            shared = sorted(settings[a].keys() & settings[b].keys())
            if len(shared) < 2:
                continue
            cells_a, cells_b = [settings[a][p] for p in shared], [settings[b][p] for p in shared]
            tau = kendall_tau([c.interval.mean for c in cells_a], [c.interval.mean for c in cells_b])
            low, high, n_items = _tau_interval(cells_a, cells_b, confidence, seed)
            out.append(Stability(task, a, b, len(shared), tau, low, high, n_items))
    return out


def _tau_interval(cells_a: list[CellSummary], cells_b: list[CellSummary], confidence: float, seed: int) -> tuple[float, float, int]:
    if any(c.is_corpus for c in cells_a + cells_b):
        return float("nan"), float("nan"), 0
    common, _ = aligned(cells_a + cells_b)
    if len(common) < 2:
        return float("nan"), float("nan"), len(common)
    source = next((c for c in cells_a + cells_b if c.clusters), None)
    labels = np.array([source.cluster_of(i) if source else i for i in common], dtype=object).astype(str)

    def table(cells: list[CellSummary]) -> np.ndarray:
        return np.array([[c.scores[i] for c in cells] for i in common], dtype=np.float64)

    low, high = tau_interval(table(cells_a), table(cells_b), labels, confidence, seed)
    return low, high, len(common)


def model_contrasts(summaries: Sequence[CellSummary], confidence: float = 0.95, seed: int = 0) -> list[ModelContrast]:
    """Per task and setting with two or more models on two or more shared prompt variants: the
    best model (by mean over those variants) against each other one, across the variants."""
    groups: dict[tuple[str, int, str], dict[str, dict[str, CellSummary]]] = defaultdict(lambda: defaultdict(dict))
    for s in summaries:
        if not s.is_corpus:
            groups[(s.cell.task, s.cell.shots, s.cell.selector)][s.cell.model][s.cell.prompt] = s
    out = []
    for (task, shots, selector), by_model in sorted(groups.items()):
        if len(by_model) < 2:
            continue
        hib = next(iter(next(iter(by_model.values())).values())).higher_is_better

        sign = 1 if hib else -1
        leader = max(sorted(by_model), key=lambda model: sign * float(np.mean([c.interval.mean for c in by_model[model].values()])))
        for other in sorted(m for m in by_model if m != leader):
            prompts = sorted(by_model[leader].keys() & by_model[other].keys())
            if len(prompts) < 2:
                continue
            cells = [by_model[leader][p] for p in prompts] + [by_model[other][p] for p in prompts]
            common, _ = aligned(cells)
            if len(common) < 2:
                continue
            a = np.array([[by_model[leader][p].scores[i] for p in prompts] for i in common])
            b = np.array([[by_model[other][p].scores[i] for p in prompts] for i in common])
            source = next((c for c in cells if c.clusters), None)
            clusters = np.array([source.cluster_of(i) for i in common], dtype=object).astype(str) if source else None
            setting = f"{shots}-shot" + ("" if selector == "none" else f" {selector}")
            out.append(ModelContrast(task, leader, other, setting, across_prompts(prompts, b, a, clusters, confidence, seed)))
    return out


def compare_runs(
    store: Store, run_ids: Sequence[str], metric: str | None = None, *, alpha: float = 0.05, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, tasks: Sequence[str] | None = None, margin: float | None = None,
    unscorable: Unscorable = "wrong",
) -> Comparison:
    """Everything ``harness compare`` shows, as data."""
    if margin is not None and margin <= 0:
        raise HarnessError(f"--margin must be positive (a difference that does not matter), got {margin}")
    summaries = summarize(store, run_ids, metric, confidence, resamples, seed, unscorable)
    if tasks:
        summaries = [s for s in summaries if s.cell.task in tasks]
    warnings: list[str] = []
    if metric is not None:
        summaries, lacking = _with_metric(summaries, metric, run_ids)
        warnings.extend(lacking)
    empty = [s for s in summaries if s.n == 0]
    summaries = [s for s in summaries if s.n > 0] or summaries
    if not summaries:
        raise HarnessError(f"runs {', '.join(run_ids)}: no cells with scored items to compare")
    if len(summaries) > len(empty):  # cells with no scored item yet are left out, and said so (not a row of zeros)
        warnings.extend(f"{s.cell.task}: {s.label}: no scored items yet (0 of {s.cell.n_planned} planned): left out" for s in empty)
    summaries, repeats = dedupe_cells(summaries, run_ids)
    warnings.extend(repeats)
    rankings = []
    shown_tasks = {s.cell.task for s in summaries}
    races = [r for r in store.races(run_ids) if r.task in shown_tasks]
    raced = {(r.run_id, c.cell_id) for r in races for c in r.cells}
    for s in summaries:
        line = describe_unscorable(s)
        if line:
            warnings.append(line)
        if s.missing and (s.cell.run_id, s.cell.cell_id) not in raced:  # a raced cell's missing items are the race's doing, said with it
            warnings.append(f"{s.cell.task}: {s.label}: unfinished: {s.missing} of {s.cell.n_planned} planned items were never stored; its "
                            f"score is over the {s.n} it has, and it is paired with the other cells on the items they share")
    for cells in ranked(summaries).values():
        ranking, notes = rank_task(cells, alpha, resamples, seed, confidence=confidence, margin=margin)
        rankings.append(ranking)
        warnings.extend(notes)
    shown = {(s.cell.run_id, s.cell.cell_id) for s in summaries}
    warnings.extend(d.line for d in degenerate_cells(store, run_ids) if (d.run_id, d.cell_id) in shown)
    for run in run_ids:  # what the run itself warned about (an unbalanced subset, a template that ignores its shots ...)
        warnings.extend(f"run {run}: {line}" for line in store.run_config(run).get("warnings", []))
    return Comparison(list(run_ids), rankings, spreads(summaries), stability(summaries, confidence, seed), alpha, confidence,
                      warnings, margin, unscorable, model_contrasts(summaries, confidence, seed), races)


def _with_metric(summaries: list[CellSummary], metric: str, run_ids: Sequence[str]) -> tuple[list[CellSummary], list[str]]:
    """The cells that carry ``metric`` (a cell never scored by it would rank as a row of zeros or NaN);
    an error naming the metrics the runs have when none does."""
    has = [s for s in summaries if metric in s.cell.metrics or s.scores or s.unscorable]
    if has:
        kept = {id(s) for s in has}
        return has, [f"{s.cell.task}: {s.label}: no {metric} scores (its metrics: {', '.join(s.cell.metrics)}): left out"
                     for s in summaries if id(s) not in kept]
    available = sorted({m for s in summaries for m in s.cell.metrics})
    close = difflib.get_close_matches(metric, available, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    if metric == CALIBRATED_METRIC:
        hint += f"; {metric} is written by `harness calibrate RUN`"
    runs = f"run {run_ids[0]} has" if len(run_ids) == 1 else f"runs {', '.join(run_ids)} have"
    raise HarnessError(f"--metric {metric!r}: {runs} no cell scored by it; the metrics there: {', '.join(available) or 'none'}{hint}")


def dedupe_cells(summaries: Sequence[CellSummary], run_ids: Sequence[str]) -> tuple[list[CellSummary], list[str]]:
    """One copy of each cell: a cell id is a hash of the cell's configuration, so the same id in two runs
    with the same model identity is the same evaluation twice (a rerun with --new); counting both would
    add a pair of copies to every multiplicity correction and the possibly-best set. The cell id names the
    model by its label only, so two runs whose model under one label differs in content (a checkpoint
    retrained in place, another adapter, other settings: ``model_json``) are two evaluations and both
    stay (``setting_labels`` tells them apart by run). The copy kept is the one with the most scored
    items, the first named run on a tie."""
    order = {run: i for i, run in enumerate(run_ids)}
    copies: dict[tuple[str, str], list[CellSummary]] = defaultdict(list)
    for s in summaries:
        copies[(s.cell.cell_id, json.dumps(s.cell.model_json, sort_keys=True, default=str))].append(s)
    kept: set[int] = set()
    notes = []
    for (cell_id, _), group in copies.items():
        chosen = min(group, key=lambda s: (-s.n, order.get(s.cell.run_id, len(order))))
        kept.add(id(chosen))
        if len(group) > 1:
            others = ", ".join(s.cell.run_id for s in group if s is not chosen)
            notes.append(f"{chosen.cell.task}: {chosen.label}: the same cell ({cell_id}) is in runs {chosen.cell.run_id} and {others}: "
                         f"compared once, with run {chosen.cell.run_id}'s copy ({chosen.n} items); the other copies are not counted")
    return [s for s in summaries if id(s) in kept], notes


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


def answer_text(row: StoredItem) -> str:
    """A readable answer from a stored item: the chosen continuation, or the generated text."""
    responses = row.response
    if row.continuations:
        continuations = row.continuations
        responses = responses[: len(continuations)]  # acc_mutual_info's unconditional results follow (runner.prepare)
        logprobs = [r.get("logprob", float("-inf")) for r in responses]
        if any(v != v for v in logprobs):  # NaN: the backend could not score it, so no choice was made
            return "(no choice: unscorable reply)"
        if logprobs:
            best = max(range(len(logprobs)), key=lambda i: logprobs[i])
            return f"{continuations[best].strip()} (choice {best})"
        return ""
    text = responses[0].get("text", "") if responses else ""
    return f"{text!r} -> {row.extracted!r}" if row.extracted is not None else repr(text)


def target_text(row: StoredItem) -> Any:
    target, continuations = row.target, row.continuations
    if continuations and isinstance(target, int):
        return f"{continuations[target].strip()} (choice {target})" if 0 <= target < len(continuations) else target
    if (continuations and isinstance(target, list) and all(isinstance(t, int) for t in target)  # several correct choices
            and all(0 <= t < len(continuations) for t in target)):
        return " | ".join(continuations[t].strip() for t in target) + f" (choices {', '.join(str(t) for t in target)})"
    return target


def item_diff(store: Store, a: StoredCell, b: StoredCell, metric: str | None = None) -> tuple[str, list[ItemDiff], int]:
    """Items (in both cells) where the two cells' scores differ on ``metric``; also the paired count."""
    name = metric or a.metrics[0]
    ra = {row.item_id: row for row in store.items([a.run_id], a.cell_id)}
    rb = {row.item_id: row for row in store.items([b.run_id], b.cell_id)}
    shared = [i for i in ra if i in rb]
    out = []
    for item in shared:
        sa = ra[item].scores.get(name, float("nan"))
        sb = rb[item].scores.get(name, float("nan"))
        if sa != sb and not (sa != sa and sb != sb):
            out.append(ItemDiff(item, sa, sb, ra[item].prompt, rb[item].prompt,
                                answer_text(ra[item]), answer_text(rb[item]), target_text(ra[item])))
    return name, out, len(shared)


def find_cell(store: Store, ref: str, run_ids: Sequence[str] | None = None) -> StoredCell:
    """A cell by id or unique id prefix, optionally written RUN:CELL, within ``run_ids`` or all runs."""
    run_part, sep, cell_part = ref.rpartition(":")
    runs = [store.resolve_run(run_part)] if sep else list(run_ids or [r.id for r in store.runs()])
    matches = [c for c in store.cells(runs) if c.cell_id.startswith(cell_part)] if runs else []
    if len(matches) != 1:
        problem = "no cell" if not matches else f"{len(matches)} cells (in runs {', '.join(sorted({m.run_id for m in matches}))})"
        raise HarnessError(f"{store.path}: {problem} matching '{ref}'. List cells with: harness show RUN; write RUN:CELL to disambiguate")
    return matches[0]
