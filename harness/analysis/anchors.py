"""Item-efficient estimates from stored runs: ``harness anchors`` (fit a 2PL model on stored cells, choose anchor
items, write the anchors file) and the full-set estimate of a cell that has the anchor items (``harness anchors
estimate``, and ``harness run --anchors``). The statistics are harness/stats/irt.py; the file is
harness/runner/anchors.py; what the numbers guarantee is in docs/compare.md ("Item-efficient estimates").

A respondent is a stored cell (one model under one prompt, shot count and selector). For a group task (MMLU) a
respondent is the set of member cells with the same setting, items are keyed by (member, id), and the full-set
score is the micro average over every member's items.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from harness.analysis.summaries import CellSummary, summarize
from harness.core.errors import HarnessError, clip, did_you_mean
from harness.runner.anchors import AnchorItem, AnchorsFile, FittedCell
from harness.stats.irt import ESTIMATOR, METHOD, IRTError, ItemParameters, choose_anchors, estimate, fit_2pl, residual_variance
from harness.store import Store, StoredCell

ItemKey = tuple[str | None, str]  # (member of a group task or None, item id)


@dataclass(frozen=True)
class Respondent:
    """One setting of a task in one run: its cells (one, or one per member of a group task) and their item scores."""

    run: str
    cells: tuple[StoredCell, ...]
    scores: dict[ItemKey, float]

    @property
    def label(self) -> str:
        c = self.cells[0]
        selector = "" if c.selector == "none" else f" {c.selector}"
        return f"{c.prompt} · {c.shots}-shot{selector} · {c.model}"

    @property
    def key(self) -> str:
        return f"{self.run}:{self.cells[0].cell_id}" if len(self.cells) == 1 else f"{self.run}:{self.cells[0].prompt}/{self.cells[0].shots}"


@dataclass(frozen=True)
class CellEstimate:
    respondent: str  # its label
    run: str
    cells: tuple[str, ...]
    anchors: int
    estimate: float
    low: float
    high: float
    confidence: float
    irt: float
    stratified: float
    full: float | None  # the cell's own mean over every item of the anchors file, when it has them all
    theta: float

    @property
    def error(self) -> float | None:
        return None if self.full is None else self.estimate - self.full

    @property
    def covered(self) -> bool | None:
        return None if self.full is None else self.low <= self.full <= self.high


def _task_cells(summaries: list[CellSummary], task: str, runs: Sequence[str]) -> tuple[list[CellSummary], bool]:
    """The summaries of ``task``'s cells (or of its members' cells, for a group task), and whether it is a group."""
    exact = [s for s in summaries if s.cell.task == task]
    if exact:
        return exact, False
    members = [s for s in summaries if s.cell.task.startswith(f"{task}_")]
    if members:
        return members, True
    names = sorted({s.cell.task for s in summaries})
    raise HarnessError(f"no cells of task '{clip(task)}' in run(s) {', '.join(runs)}.{did_you_mean(task, names)} "
                       f"Their tasks: {', '.join(names) or 'none'}")


def respondents(store: Store, runs: Sequence[str], task: str, metric: str | None = None,
                prompts: Sequence[str] | None = None, exclude_prompts: Sequence[str] = ()) -> tuple[list[Respondent], str, bool]:
    """The task's respondents in ``runs`` (filtered by prompt variant), their 0/1 item scores (unscorable items count as
    wrong, as in ``compare``), the metric, and whether the task is a group."""
    summaries, group = _task_cells(summarize(store, runs, metric), task, runs)
    names = sorted({s.metric for s in summaries})
    if len(names) > 1:
        raise HarnessError(f"task '{task}': its cells have different main metrics ({', '.join(names)}); choose one with --metric")
    kinds = {s.kind for s in summaries}
    if kinds != {"binary"}:
        raise HarnessError(f"task '{task}': metric '{names[0]}' is not a 0/1 (right/wrong) metric, so no 2PL model applies; "
                           "give a 0/1 metric with --metric (acc, exact_match, ...)")
    all_prompts = sorted({s.cell.prompt for s in summaries})
    for p in [*(prompts or []), *exclude_prompts]:
        if p not in all_prompts:
            raise HarnessError(f"task '{task}' has no prompt variant '{clip(p)}' in run(s) {', '.join(runs)}.{did_you_mean(p, all_prompts)}")
    grouped: dict[tuple[str, str, str, int, str, str], list[CellSummary]] = {}
    for s in summaries:
        c = s.cell
        if (prompts and c.prompt not in prompts) or c.prompt in exclude_prompts:
            continue
        grouped.setdefault((c.run_id, c.prompt, c.prompt_sha256, c.shots, c.selector, c.model), []).append(s)
    out = []
    for (run, *_), members in grouped.items():
        scores: dict[ItemKey, float] = {}
        for s in members:
            for item, value in s.scores.items():
                scores[(s.cell.task if group else None, item)] = value
        out.append(Respondent(run, tuple(s.cell for s in members), scores))
    return out, names[0], group


def _sha(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fit_anchors(store: Store, runs: Sequence[str], task: str, k: int, seed: int = 1234, metric: str | None = None,
                prompts: Sequence[str] | None = None, exclude_prompts: Sequence[str] = ()) -> AnchorsFile:
    """Fit the 2PL model on ``task``'s cells in ``runs`` and choose ``k`` anchors (harness/stats/irt.py)."""
    people, metric_name, group = respondents(store, runs, task, metric, prompts, exclude_prompts)
    if len(people) < 3:
        raise HarnessError(f"task '{task}': {len(people)} cell(s) in run(s) {', '.join(runs)}; an IRT fit needs at least 3 "
                           "(each cell is one respondent: add runs with --from, or prompt variants: harness formats)")
    keys = sorted({key for p in people for key in p.scores}, key=lambda key: (key[0] or "", key[1]))
    if k > len(keys):
        raise HarnessError(f"-k {k}: task '{task}' has {len(keys)} items in these cells; -k must be at most {len(keys)}")
    index = {key: j for j, key in enumerate(keys)}
    y = np.full((len(people), len(keys)), np.nan)
    for i, p in enumerate(people):
        for key, value in p.scores.items():
            y[i, index[key]] = value
    try:
        fit = fit_2pl(y)
        design = choose_anchors(fit.items, fit.abilities, k, seed)
        floor = residual_variance(fit.items, y, fit.abilities, design.strata)
    except IRTError as exc:
        raise HarnessError(f"harness anchors {task}: {exc}") from None
    anchors = set(design.anchors.tolist())
    answered = ~np.isnan(y)
    accuracy = np.nansum(y, axis=0) / answered.sum(axis=0)
    items = [AnchorItem(id=key[1], member=key[0], discrimination=float(fit.items.discrimination[j]), intercept=float(fit.items.intercept[j]),
                        stratum=int(design.strata[j]), anchor=j in anchors, accuracy=round(float(accuracy[j]), 6))
             for j, key in enumerate(keys)]
    configs = {run: store.run_config(run) for run in {p.run for p in people}}
    run_hashes = {r.id: r.config_hash for r in store.runs() if r.id in configs}
    fitted = []
    for i, p in enumerate(people):
        c = p.cells[0]
        data = configs[p.run].get("tasks", {})
        split = [data.get(cell.task, {}).get("data", {}).get("test") for cell in p.cells]
        fitted.append(FittedCell(
            run=p.run, cell=c.cell_id if len(p.cells) == 1 else ",".join(cell.cell_id for cell in p.cells), prompt=c.prompt,
            prompt_sha256=c.prompt_sha256, shots=c.shots, selector=c.selector, model=c.model, model_sha256=_sha(c.model_json),
            run_config_hash=run_hashes.get(p.run, ""), data_sha256=split[0] if len(split) == 1 else (_sha(split) if all(split) else None),
            items=len(p.scores), score=round(float(np.mean(list(p.scores.values()))), 6), ability=round(float(fit.abilities[i]), 6)))
    try:
        harness_version = version("harness")
    except PackageNotFoundError:
        harness_version = None
    return AnchorsFile(
        task=task, metric=metric_name, k=k, seed=seed, method=METHOD, estimator=ESTIMATOR, items=items, fitted_on=fitted,
        residual_variance=[round(float(v), 8) for v in floor],
        fit={"respondents": len(people), "items": len(keys), "group": group, "log_likelihood": round(fit.log_likelihood, 4),
             "converged": fit.converged, "iterations": fit.iterations, "prior_log_a": fit.prior_log_a, "prior_intercept": fit.prior_intercept,
             "strata": design.n_strata, "missing_answers": int((~answered).sum())},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), harness_version=harness_version)


def estimate_cells(store: Store, runs: Sequence[str], anchors: AnchorsFile, confidence: float = 0.95,
                   prompts: Sequence[str] | None = None) -> list[CellEstimate]:
    """The full-set estimate of every cell (respondent) of the anchors' task in ``runs`` from its anchor items' scores;
    a cell that also has every item of the file gets its own full-set mean beside it (the check)."""
    people, metric, _ = respondents(store, runs, anchors.task, anchors.metric, prompts)
    keys: list[ItemKey] = [(i.member, i.id) for i in anchors.items]
    params = ItemParameters(np.array([i.discrimination for i in anchors.items]), np.array([i.intercept for i in anchors.items]))
    strata = np.array([i.stratum for i in anchors.items])
    chosen = [j for j, i in enumerate(anchors.items) if i.anchor]
    out = []
    for p in people:
        missing = [keys[j] for j in chosen if keys[j] not in p.scores]
        if missing:
            shown = ", ".join(f"{m + '/' if m else ''}{i}" for m, i in missing[:5])
            raise HarnessError(f"cell {p.label} of run {p.run} lacks {len(missing)} of the {len(chosen)} anchor items ({shown}"
                               f"{', ...' if len(missing) > 5 else ''}): evaluate them with harness run --anchors FILE")
        answers = np.array([p.scores[keys[j]] for j in chosen])
        try:
            est = estimate(params, strata, chosen, answers, confidence, anchors.residual_variance)
        except IRTError as exc:
            raise HarnessError(f"harness anchors estimate: {exc}") from None
        full = float(np.mean([p.scores[key] for key in keys])) if all(key in p.scores for key in keys) else None
        out.append(CellEstimate(p.label, p.run, tuple(c.cell_id for c in p.cells), len(chosen), est.estimate, est.low, est.high,
                                confidence, est.irt, est.stratified, full, est.theta))
    if not out:
        raise HarnessError(f"no cells of task '{anchors.task}' with metric '{metric}' in run(s) {', '.join(runs)}")
    return out


def summary_row(rows: Sequence[CellEstimate]) -> dict[str, float | int | None]:
    """Over the cells that have their full-set mean: mean absolute error, RMSE, coverage (of the estimate and the others)."""
    checked = [r for r in rows if r.full is not None]
    if not checked:
        return {"checked": 0}
    err = np.array([r.estimate - r.full for r in checked if r.full is not None])
    irt = np.array([r.irt - r.full for r in checked if r.full is not None])
    strat = np.array([r.stratified - r.full for r in checked if r.full is not None])
    return {"checked": len(checked), "mae": float(np.mean(np.abs(err))), "rmse": float(math.sqrt(np.mean(err**2))),
            "coverage": float(np.mean([bool(r.covered) for r in checked])), "mean_width": float(np.mean([r.high - r.low for r in checked])),
            "rmse_irt": float(math.sqrt(np.mean(irt**2))), "rmse_stratified": float(math.sqrt(np.mean(strat**2)))}
