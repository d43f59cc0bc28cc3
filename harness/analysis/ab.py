"""A/B of a tuned model against its base on identical prompts and items.

Both models run the same experiment spec (only the model differs), so every cell of the tuned
model has a twin of the base with the same template, demonstrations and items; a finished run
of exactly this spec and model content is reused instead of evaluated again (and says so).

What is tested (all tuned − base, harness.stats.difference):
- **per cell**: the paired difference on the cell's items, its interval, test and verdict.
- **per task, all cells**: the cells pooled with the *item* as the unit (a declared cluster when
  the task has one): every (cell, item) difference is kept, but items are resampled as wholes, so
  3 cells of 100 items count as 100 items with 3 correlated looks each, not 300 independent ones
  (0/1 metrics: Tango's interval with the counts divided by the items' design effect; continuous:
  bootstrap-t over items; corpus metrics: the mean over cells of the corpus-statistic difference,
  items resampled jointly). Its p-values are Holm-corrected across tasks, and so are its TOST
  p-values, so many tasks manufacture neither a win nor an "equivalent".
- **across prompts** (a task with several cells): the mean over the prompt variants with an
  interval that counts prompt variance too (harness.stats.across_prompts), the worst and best variant
  and Kendall τ of the variants' order under the two models: is the better model a better prompt?

The overall verdict: tuned is *better* (better somewhere, worse nowhere), *worse*, *mixed*,
*equivalent within ±m* (every task), or *inconclusive*, with what each task could detect.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.aggregates import corpus_replicates
from harness.analysis.summaries import CellSummary, Unscorable, aligned, describe_unscorable, summarize
from harness.backends import ModelSpec, parse_model
from harness.core.errors import HarnessError
from harness.runner.execute import announce, run_experiment
from harness.runner.planning import plan
from harness.runner.provenance import config_snapshot, stable_hash
from harness.scoring import get_metric
from harness.stats.across_prompts import AcrossPrompts, across_prompts
from harness.stats.basics import DEFAULT_RESAMPLES, holm
from harness.stats.difference import Difference, cluster_codes, corpus_difference, difference, resample_weights
from harness.stats.paired import PairedResult, Pairing, pair, result_of
from harness.stats.verdicts import Verdict, pair_verdict, points
from harness.store.store import Store


@dataclass(frozen=True)
class ABCell:
    task: str
    prompt: str
    shots: int
    selector: str
    base: CellSummary
    tuned: CellSummary
    result: PairedResult  # tuned minus base
    verdict: Verdict  # this cell alone (unadjusted)

    @property
    def name(self) -> str:
        return f"{self.prompt} · {self.shots}-shot" + ("" if self.selector == "none" else f" {self.selector}")


@dataclass(frozen=True)
class ABTask:
    task: str
    metric: str
    higher_is_better: bool
    cells: list[ABCell]
    pooled: PairedResult  # tuned minus base over all matched cells, the item as the unit
    p_holm: float
    verdict: Verdict  # from the Holm-adjusted p and Holm-adjusted TOST p
    unit: str  # what the pooled test resamples, in words
    across: AcrossPrompts | None = None
    percent: bool = True  # differences shown in percentage points (metrics in [0, 1])

    def outcome(self, alpha: float | None = None) -> str:
        return self.verdict.code


@dataclass(frozen=True)
class ABReport:
    base: str
    tuned: str
    base_run: str
    tuned_run: str
    tasks: list[ABTask]
    alpha: float
    warnings: list[str] = field(default_factory=list)
    margin: float | None = None
    confidence: float = 0.95
    flags: list[str] = field(default_factory=list)  # loud problems: overlap with training data, degenerate answers
    notes: list[str] = field(default_factory=list)  # what was checked (e.g. the tuned model's selection split is disjoint)

    @property
    def verdict(self) -> str:
        codes = {t.task: t.verdict.code for t in self.tasks}
        better = [t for t, c in codes.items() if c == "better"]
        worse = [t for t, c in codes.items() if c == "worse"]
        equivalent = [t for t, c in codes.items() if c == "equivalent"]
        n = len(self.tasks)
        how = f"(Holm across {n} task(s), α={self.alpha})" if n > 1 else f"(α={self.alpha})"
        if better and not worse:
            return f"tuned is better than base on {len(better)} of {n} task(s) ({', '.join(better)}), worse on none {how}"
        if worse and not better:
            return f"tuned is worse than base on {len(worse)} of {n} task(s) ({', '.join(worse)}), better on none {how}"
        if better and worse:
            return f"mixed: tuned better on {', '.join(better)}, worse on {', '.join(worse)} {how}"
        if equivalent and len(equivalent) == n and self.margin:
            return f"tuned and base are equivalent within ±{points(self.margin, self.tasks[0].percent)} on all {n} task(s) {how}"
        rest = [t for t in self.tasks if t.verdict.code == "inconclusive"]
        details = "; ".join(f"{t.task}: {t.verdict.detail}" for t in rest)
        also = f" (equivalent on {', '.join(equivalent)})" if equivalent else ""
        return f"inconclusive: no task shows a difference {how}{also}; {details}"

    def to_dict(self) -> dict[str, Any]:
        def paired(r: PairedResult, v: Verdict) -> dict[str, Any]:
            res = v.resolution
            return {"n": r.n, "dropped": r.dropped, "base": r.mean_b, "tuned": r.mean_a, "diff": r.diff.mean,
                    "diff_ci_low": r.diff.low, "diff_ci_high": r.diff.high, "p_value": r.p_value, "test": r.test,
                    "tuned_wins": r.wins, "ties": r.ties, "tuned_losses": r.losses, "verdict": v.code, "verdict_text": v.text,
                    "verdict_detail": v.detail, "p_equivalence": v.p_equivalence,
                    "mde": None if res is None else res.mde, "items_needed": None if res is None else res.items_needed,
                    "design_effect": r.difference.deff, "units": r.difference.units, "warning": r.warning}

        def across(a: AcrossPrompts | None) -> dict[str, Any] | None:
            if a is None:
                return None
            return {"variants": {v.name: v.diff for v in a.variants}, "items": a.items, "diff": a.mean, "diff_ci_low": a.low,
                    "diff_ci_high": a.high, "p_value": a.p_value, "df": a.df, "worst": a.worst.name, "best": a.best.name,
                    "prompt_sd": a.prompt_sd, "kendall_tau": a.tau, "tau_ci_low": a.tau_low, "tau_ci_high": a.tau_high,
                    "method": a.method}

        return {
            "base": self.base, "tuned": self.tuned, "base_run": self.base_run, "tuned_run": self.tuned_run, "alpha": self.alpha,
            "confidence": self.confidence, "margin": self.margin, "verdict": self.verdict, "warnings": self.warnings,
            "flags": self.flags, "notes": self.notes,
            "tasks": [
                {"task": t.task, "metric": t.metric, "higher_is_better": t.higher_is_better, "outcome": t.verdict.code,
                 "p_holm": t.p_holm, "unit": t.unit, **paired(t.pooled, t.verdict), "across_prompts": across(t.across),
                 "cells": [{"prompt": c.prompt, "shots": c.shots, "selector": c.selector, "base_cell": c.base.cell.cell_id,
                            "tuned_cell": c.tuned.cell.cell_id, **paired(c.result, c.verdict)} for c in t.cells]}
                for t in self.tasks
            ],
        }


def tuned_spec(base: ModelSpec, tuned: str | None, adapter: str | None) -> ModelSpec:
    """The tuned model: a full checkpoint (BACKEND:MODEL) or the base plus a PEFT adapter."""
    if bool(tuned) == bool(adapter):
        raise HarnessError("harness ab: give the tuned model as exactly one of --tuned BACKEND:MODEL or --adapter PATH")
    if adapter:
        return base.model_copy(update={"adapter": adapter})
    return parse_model(tuned)


def finished_run(store: Store, spec: Any) -> str | None:
    """The latest finished run of exactly this experiment, if any: same config snapshot, which
    holds each model's identity (content fingerprints of weights, adapter, tokenizer and chat
    template, dtype, max_length...), so a model rewritten at the same path is not reused."""
    config = config_snapshot(spec, plan(spec))
    return store.finished_run(stable_hash(config))  # the runner's config hash


def run_pair(
    spec: Any, base: ModelSpec, tuned: ModelSpec, store: Store, *, reuse: bool = True, show_progress: bool = True,
    log: Any = None,
) -> tuple[str, str]:
    """Evaluate (or reuse) the spec once with each model; returns (base run, tuned run).

    A reused run, a resumed one and answers served from the response cache are each said in
    one line through ``log`` (a callable taking the line; default: print to stderr, so
    ``--json`` stdout stays JSON)."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if base.label == tuned.label:
        raise HarnessError(f"harness ab: base and tuned are the same model ({base.label})")
    runs = []
    announce([base, tuned])  # vllm: keeps the base's engine for the tuned adapter
    for model in (base, tuned):
        model_spec = spec.model_copy(update={"models": [model]})
        existing = finished_run(store, model_spec) if reuse else None
        if existing:
            say(f"reusing finished run {existing} for {model.label} (same config and model content)")
        runs.append(existing or run_experiment(model_spec, store, show_progress=show_progress, log=say).run_id)
    return runs[0], runs[1]


def _pick(summaries: list[CellSummary], run: str, label: str | None, role: str) -> list[CellSummary]:
    models = sorted({s.cell.model for s in summaries})
    if label is not None:
        chosen = [s for s in summaries if s.cell.model == label]
        if not chosen:
            raise HarnessError(f"harness ab: run {run} has no cells of the {role} model '{label}' (it has: {', '.join(models)})")
        return chosen
    if len(models) != 1:
        raise HarnessError(f"harness ab: run {run} holds {len(models)} models ({', '.join(models)}); name the {role} one with --{role}")
    return summaries


@dataclass(frozen=True)
class _Options:
    alpha: float
    confidence: float
    margin: float | None
    resamples: int
    seed: int


def _cell_result(base: CellSummary, tuned: CellSummary, o: _Options) -> PairedResult:
    """Tuned − base on one cell's paired items (the corpus statistic for corpus metrics)."""
    pairing = pair(tuned.scores, base.scores)
    labels = [base.cluster_of(i) for i in pairing.item_ids] if base.clusters else None
    if base.corpus is None:
        d = difference(np.asarray(pairing.a), np.asarray(pairing.b), base.kind, labels, o.confidence, o.resamples, o.seed)
        mean: Callable[[Any], float] = (lambda x: float(np.mean(x)) if len(x) else float("nan"))
        return result_of(d, pairing, base.higher_is_better, mean(pairing.a), mean(pairing.b))
    return _corpus_pool([(base, tuned)], list(pairing.item_ids), pairing, o)


def _corpus_pool(pairs: Sequence[tuple[CellSummary, CellSummary]], ids: list[str], pairing: Pairing, o: _Options) -> PairedResult:
    """Mean over cells of tuned − base corpus statistics, items resampled jointly across cells."""
    base0 = pairs[0][0]
    metric = get_metric(base0.metric)
    labels = np.array([base0.cluster_of(i) for i in ids], dtype=object).astype(str)
    _, units = cluster_codes(labels)
    weights = resample_weights(units, o.resamples, o.seed)
    columns = [[s.corpus[i] for i in ids] for b, t in pairs for s in (t, b)]  # type: ignore[index]
    point, reps, jack = corpus_replicates(metric, columns, labels, weights)
    delta: Callable[[np.ndarray], Any] = (lambda x: np.mean(x[..., 0::2] - x[..., 1::2], axis=-1))
    diffs = np.asarray(pairing.a) - np.asarray(pairing.b)
    d = corpus_difference(float(delta(point)), delta(reps), delta(jack), len(ids), units, int(np.sum(diffs != 0)), o.confidence)
    return result_of(d, pairing, base0.higher_is_better, float(np.mean(point[0::2])), float(np.mean(point[1::2])))


def pooled_difference(tuned: np.ndarray, base: np.ndarray, units: Sequence[str] | np.ndarray, kind: str, confidence: float = 0.95,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Difference:
    """Tuned − base over every (cell, item) score of a task, ``units`` naming each score's item (or
    cluster): the unit is resampled whole, so several cells of one item are one unit, not several."""
    return difference(tuned, base, kind, units, confidence, resamples, seed)


def _pooled(cells: list[ABCell], o: _Options) -> tuple[PairedResult, str]:
    """All matched cells of a task, the item (or its declared cluster) as the resampling unit."""
    first = cells[0].base
    clustered = first.clusters is not None
    unit = "clusters" if clustered else "items"
    if first.corpus is not None:
        common, _ = aligned([s for c in cells for s in (c.base, c.tuned)])
        a = [c.tuned.scores[i] for c in cells for i in common]
        b = [c.base.scores[i] for c in cells for i in common]
        keys = tuple(f"{c.name}|{i}" for c in cells for i in common)
        pairing = Pairing(keys, tuple(a), tuple(b))
        result = _corpus_pool([(c.base, c.tuned) for c in cells], common, pairing, o)
        return result, f"mean over {len(cells)} cells of the corpus-statistic difference; {result.difference.units} {unit} resampled jointly"
    ids: list[str] = []
    a_values: list[float] = []
    b_values: list[float] = []
    labels: list[str] = []
    dropped: dict[str, int] = defaultdict(int)
    for c in cells:
        p = pair(c.tuned.scores, c.base.scores)
        for reason, count in p.dropped.items():
            dropped[reason] += count
        ids.extend(f"{c.name}|{i}" for i in p.item_ids)
        a_values.extend(p.a)
        b_values.extend(p.b)
        labels.extend(c.base.cluster_of(i) for i in p.item_ids)
    pairing = Pairing(tuple(ids), tuple(a_values), tuple(b_values), dict(dropped))
    d = pooled_difference(np.asarray(a_values), np.asarray(b_values), labels, first.kind, o.confidence, o.resamples, o.seed)
    mean: Callable[[Any], float] = (lambda x: float(np.mean(x)) if len(x) else float("nan"))
    result = result_of(d, pairing, first.higher_is_better, mean(a_values), mean(b_values))
    return result, (f"{d.units} {unit} as units, {len(cells)} cell(s) each"
                    + (f", design effect {d.deff:.2f}" if d.deff > 1 else ""))


def _across(cells: list[ABCell], o: _Options) -> AcrossPrompts | None:
    """Across prompt variants: needs two or more cells with per-item (not corpus) scores."""
    if len(cells) < 2 or cells[0].base.corpus is not None:
        return None
    common, _ = aligned([s for c in cells for s in (c.base, c.tuned)])
    if len(common) < 2:
        return None
    base = np.array([[c.base.scores[i] for c in cells] for i in common], dtype=np.float64)
    tuned = np.array([[c.tuned.scores[i] for c in cells] for i in common], dtype=np.float64)
    clusters = np.array([cells[0].base.cluster_of(i) for i in common], dtype=object).astype(str) if cells[0].base.clusters else None
    return across_prompts([c.name for c in cells], base, tuned, clusters, o.confidence, o.seed)


def ab_compare(
    store: Store, base_run: str, tuned_run: str, *, base_label: str | None = None, tuned_label: str | None = None,
    metric: str | None = None, alpha: float = 0.05, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
    confidence: float = 0.95, margin: float | None = None, unscorable: Unscorable = "wrong",
) -> ABReport:
    """Pair the base run's cells with the tuned run's and test tuned minus base."""
    if margin is not None and margin <= 0:
        raise HarnessError(f"--margin must be positive (a difference that does not matter), got {margin}")
    o = _Options(alpha, confidence, margin, resamples, seed)
    base = _pick(summarize(store, [base_run], metric, confidence, resamples, seed, unscorable), base_run, base_label, "base")
    tuned = _pick(summarize(store, [tuned_run], metric, confidence, resamples, seed, unscorable), tuned_run, tuned_label, "tuned")
    if base_run == tuned_run and base_label is None:
        raise HarnessError("harness ab: the same run for both sides; name the models with --base and --tuned")

    def key(s: CellSummary) -> tuple[str, str, int, str]:
        return (s.cell.task, s.cell.prompt, s.cell.shots, s.cell.selector)

    tuned_by_key = {key(s): s for s in tuned}
    warnings: list[str] = [line for s in [*base, *tuned] if (line := describe_unscorable(s))]
    by_task: dict[str, list[ABCell]] = defaultdict(list)
    for b in base:
        t = tuned_by_key.pop(key(b), None)
        if t is None:
            warnings.append(f"{' / '.join(map(str, key(b)))}: only the base has this cell; left out")
            continue
        if t.cell.prompt_sha256 != b.cell.prompt_sha256:
            warnings.append(f"{' / '.join(map(str, key(b)))}: the template changed between the two runs; the prompts are not identical")
        result = _cell_result(b, t, o)
        verdict = pair_verdict(result.difference, b.higher_is_better, alpha=alpha, margin=margin, percent=_percent([b, t]))
        by_task[b.cell.task].append(ABCell(*key(b), base=b, tuned=t, result=result, verdict=verdict))
    warnings += [f"{' / '.join(map(str, k))}: only the tuned model has this cell; left out" for k in tuned_by_key]
    if not by_task:
        raise HarnessError(f"harness ab: runs {base_run} and {tuned_run} have no matching cells (same task, prompt, shots, selector)")
    pooled = {task: _pooled(cells, o) for task, cells in by_task.items()}
    p_holm = holm([r.p_value for r, _ in pooled.values()])
    p_equivalence = holm([r.difference.p_equivalence(margin) for r, _ in pooled.values()]) if margin else [None] * len(pooled)
    tasks = []
    for (task, cells), ph, pe in zip(by_task.items(), p_holm, p_equivalence):
        result, unit = pooled[task]
        percent = _percent([s for c in cells for s in (c.base, c.tuned)])
        verdict = pair_verdict(result.difference, cells[0].base.higher_is_better, alpha=alpha, margin=margin, p=ph,
                               p_equivalence=pe, percent=percent, looks=len(cells) if cells[0].base.corpus is None else 1)
        tasks.append(ABTask(task, cells[0].base.metric, cells[0].base.higher_is_better, cells, result, ph, verdict, unit,
                            _across(cells, o), percent))
        if result.dropped:
            warnings.append(f"{task}: paired on {result.n} cell items, dropped {', '.join(f'{v} {k}' for k, v in result.dropped.items())}")
    base_name = base_label or base[0].cell.model
    tuned_name = tuned_label or tuned[0].cell.model
    return ABReport(base_name, tuned_name, base_run, tuned_run, tasks, alpha, warnings, margin, confidence)


def _percent(cells: Sequence[CellSummary]) -> bool:
    return all(-1.0 <= v <= 1.0 for s in cells for v in s.scores.values())


@dataclass(frozen=True)
class Flips:
    """The items of one matched cell on which the two models differ, by the metric's direction (for a 0/1 metric:
    ``fixed`` right in tuned and wrong in base, ``broken`` the reverse); as many as ``result.wins`` and ``result.losses``."""

    fixed: list[str]
    broken: list[str]


def flips(cell: ABCell) -> Flips:
    """Tuned against base on the cell's paired items (the pairing its test used: items scored in both)."""
    pairing = pair(cell.tuned.scores, cell.base.scores)
    sign = 1 if cell.base.higher_is_better else -1
    fixed = [i for i, a, b in zip(pairing.item_ids, pairing.a, pairing.b) if sign * (a - b) > 0]
    broken = [i for i, a, b in zip(pairing.item_ids, pairing.a, pairing.b) if sign * (a - b) < 0]
    return Flips(fixed, broken)


@dataclass(frozen=True)
class ClusterDelta:
    """One declared cluster of a task: tuned − base over its paired (cell, item) scores, all matched cells pooled
    as the task's row pools them. Descriptive: the test is the task's pooled row, not one per cluster."""

    cluster: str
    items: int  # distinct items of the cluster
    pairs: int  # (cell, item) pairs
    base: float  # mean over the pairs
    tuned: float
    diff: float  # tuned − base
    fixed: int  # pairs where tuned is better by the metric's direction
    broken: int


def cluster_deltas(task: ABTask) -> list[ClusterDelta]:
    """Per declared cluster (none when the task declares none, or for a corpus metric, whose statistic is not a mean
    of item scores), worst for the tuned model first."""
    first = task.cells[0].base
    if first.clusters is None or first.corpus is not None:
        return []
    sign = 1 if task.higher_is_better else -1
    pairs: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for c in task.cells:
        p = pair(c.tuned.scores, c.base.scores)
        for item, a, b in zip(p.item_ids, p.a, p.b):
            pairs[c.base.cluster_of(item)].append((item, a, b))
    out = []
    for name, rows in pairs.items():
        base, tuned = float(np.mean([b for _, _, b in rows])), float(np.mean([a for _, a, _ in rows]))
        out.append(ClusterDelta(name, len({i for i, _, _ in rows}), len(rows), base, tuned, tuned - base,
                                sum(1 for _, a, b in rows if sign * (a - b) > 0), sum(1 for _, a, b in rows if sign * (a - b) < 0)))
    return sorted(out, key=lambda d: (sign * d.diff, d.cluster))


def cell_pairs(report: ABReport) -> Sequence[tuple[str, str]]:
    """(base RUN:CELL, tuned RUN:CELL) for every matched cell, for ``harness show --diff``."""
    return [(f"{report.base_run}:{c.base.cell.cell_id}", f"{report.tuned_run}:{c.tuned.cell.cell_id}") for t in report.tasks for c in t.cells]
