"""How much does the score move with each factor of a few-shot setup? (issue 7, item 5)

A run's cells already say which factor values produced them, so attribution needs no
extra bookkeeping: the prompt name gives the **template** and the **format** variant
(``lm_eval__fmt3``: template ``lm_eval``, format 3, written by ``harness formats``;
format slices compare ``__fmt<i>`` variants, template slices the names without it), the selector label gives the
**selector**, the demonstration **order** (``knn_similar_last``: selector ``knn``, order
``similar_last``) and the **draw** (``random draw 2``), and items calibrated by
``harness calibrate`` carry ``acc_calibrated`` beside ``acc`` (**calibration**).

For a factor, a *slice* is a set of settings that agree on every other factor and differ
in this one; its spread is min / median / max of the settings' means. Each setting's mean
has a CI: Wilson (0/1 metrics, bootstrap otherwise) on its items when it is one draw; a t
interval over draws (as ``harness draws``) when it pools several that differ, since then
the draws are the replicates (identical draws of a deterministic selector count as one). The draw factor itself shows each draw's cell with its Wilson CI.
A t interval over a single draw is no interval (NaN bounds, method "1 draw: no CI over
draws"), never the zero-width ``(mean, mean)``. Selectors
and calibration are also tested pairwise on the same items (harness.stats.difference: Tango's score
interval/test when both sides are 0/1 per item, a studentised bootstrap of the per-item means over
draws otherwise: the item is the unit, draws are averaged within it), Holm-adjusted within the factor.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from harness.analysis.compare import cell_scores
from harness.analysis.draws import ONE_DRAW, DrawSummary, split_selector
from harness.core.errors import HarnessError
from harness.fewshot.selectors import ORDERS
from harness.runner.calibration import CALIBRATED_METRIC
from harness.scoring import get_metric
from harness.stats.basics import DEFAULT_RESAMPLES, Interval, holm, mean_interval
from harness.stats.paired import PairedResult, compare_scores
from harness.store import Store, StoredCell

FACTORS = ("template", "format", "selector", "order", "draw", "calibration")
PAIRED_FACTORS = ("selector", "calibration")
DESCRIPTIONS = {
    "template": "prompt variant (original formats only)", "format": "format perturbation of one template (harness formats)",
    "selector": "demonstration choice: selector, mean over draws", "order": "order of the chosen demonstrations",
    "draw": "demonstration draw within a selector (--draws)", "calibration": "contextual calibration (harness calibrate)",
}
_FORMAT = re.compile(r"(?P<template>.+)__fmt(?P<index>\d+)")
UNCALIBRATED, CALIBRATED = "uncalibrated", "calibrated"
NOT_A_FORMAT = -1  # a prompt name without __fmt<i>: a template as written, not a format variant


@dataclass(frozen=True, order=True)
class Setting:
    """One evaluated configuration, as factor values read from a cell's stored labels."""

    task: str
    model: str
    shots: int
    template: str
    format: int  # i of a __fmt<i> variant (0 = the original formatting); NOT_A_FORMAT otherwise
    selector: str
    order: str
    draw: int
    calibration: str

    def level(self, factor: str) -> str:
        value = getattr(self, factor)
        return {"format": f"fmt{value}", "draw": f"draw {value}"}.get(factor, str(value))

    def context(self, factor: str) -> str:
        """Every factor value but ``factor``'s, for people (defaults and draws left out)."""
        if factor == "template":
            prompt = ""
        elif factor == "format":
            prompt = f"{self.template} formats"
        else:
            prompt = self.template + (f"__fmt{self.format}" if self.format >= 0 else "")
        parts = [self.task, self.model, f"{self.shots}-shot", prompt, "" if factor == "selector" else self.selector,
                 "" if factor == "order" or self.order == "selected" else f"order {self.order}",
                 "calibrated" if factor != "calibration" and self.calibration == CALIBRATED else ""]
        return " · ".join(p for p in parts if p)


def parse_cell(cell: StoredCell) -> Setting:
    """The factor values of a stored cell (see the module docstring)."""
    match = _FORMAT.fullmatch(cell.prompt)
    template, fmt = (match["template"], int(match["index"])) if match else (cell.prompt, NOT_A_FORMAT)
    selector, draw = split_selector(cell.selector)
    order = "selected"
    for name in ORDERS[1:]:
        if selector.endswith("_" + name):
            selector, order = selector[: -len(name) - 1], name
    return Setting(cell.task, cell.model, cell.shots, template, fmt, selector, order, draw, UNCALIBRATED)


@dataclass(frozen=True)
class Level:
    """One value of a factor within a slice: its mean and CI."""

    name: str
    interval: Interval  # Wilson/bootstrap over items (one draw) or t over draws
    draws: int
    scores: dict[str, float] = field(repr=False, compare=False)  # item id -> score (mean over draws): the pairing key

    @property
    def mean(self) -> float:
        return self.interval.mean


@dataclass(frozen=True)
class Slice:
    """Settings that differ only in ``factor``: the factor's spread with everything else fixed."""

    factor: str
    task: str
    context: str
    metric: str
    higher_is_better: bool
    levels: tuple[Level, ...]
    over_draws: Interval | None = None  # draw slices: the t CI of the mean over draws

    @property
    def means(self) -> list[float]:
        return [lv.mean for lv in self.levels]

    @property
    def min(self) -> Level:
        return min(self.levels, key=lambda lv: lv.mean)

    @property
    def max(self) -> Level:
        return max(self.levels, key=lambda lv: lv.mean)

    @property
    def median(self) -> float:
        return float(statistics.median(self.means))

    @property
    def range(self) -> float:
        return self.max.mean - self.min.mean

    def to_json(self) -> dict[str, Any]:
        def iv(i: Interval) -> dict[str, Any]:
            def finite(v: float) -> float | None:
                return None if v != v else v  # no CI (one draw): null, never NaN in the JSON

            return {"mean": i.mean, "ci_low": finite(i.low), "ci_high": finite(i.high), "n": i.n, "ci_method": i.method}

        return {"factor": self.factor, "task": self.task, "context": self.context, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "min": self.min.mean, "min_level": self.min.name,
                "median": self.median, "max": self.max.mean, "max_level": self.max.name, "range": self.range,
                "levels": [{"level": lv.name, "draws": lv.draws, **iv(lv.interval)} for lv in self.levels],
                "over_draws": None if self.over_draws is None else iv(self.over_draws)}


@dataclass(frozen=True)
class PairedTest:
    factor: str
    task: str
    context: str
    a: str
    b: str
    result: PairedResult  # a minus b
    p_holm: float

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {"factor": self.factor, "task": self.task, "context": self.context, "a": self.a, "b": self.b, "n": r.n,
                "mean_a": r.mean_a, "mean_b": r.mean_b, "diff": r.diff.mean, "diff_ci_low": r.diff.low, "diff_ci_high": r.diff.high,
                "test": r.test, "p": r.p_value, "p_holm": self.p_holm, "wins": r.wins, "ties": r.ties, "losses": r.losses}


@dataclass(frozen=True)
class FactorSummary:
    factor: str
    slices: int
    median_range: float
    largest: Slice


@dataclass(frozen=True)
class Sensitivity:
    runs: list[str]
    slices: list[Slice]
    tests: list[PairedTest]
    confidence: float
    notes: list[str] = field(default_factory=list)

    def factors(self) -> list[FactorSummary]:
        out = []
        for factor in FACTORS:
            own = [s for s in self.slices if s.factor == factor]
            if own:
                out.append(FactorSummary(factor, len(own), float(statistics.median(s.range for s in own)), max(own, key=lambda s: s.range)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "confidence": self.confidence,
                "factors": [{"factor": f.factor, "slices": f.slices, "median_range": f.median_range, "max_range": f.largest.range,
                             "max_range_context": f.largest.context} for f in self.factors()],
                "slices": [s.to_json() for s in self.slices], "paired_tests": [t.to_json() for t in self.tests], "notes": self.notes}


# -- building it --------------------------------------------------------------------------
Observations = dict[Setting, dict[str, float]]


def observations(store: Store, run_ids: Sequence[str], metric: str | None = None,
                 tasks: Sequence[str] | None = None) -> tuple[Observations, dict[str, str], list[str]]:
    """Setting -> item id -> score, the metric of each task, and notes on what was merged.

    ``acc`` cells with ``acc_calibrated`` item scores also give a calibrated setting. The
    same setting in several runs (a repeated cell) merges its items; later runs win.
    """
    table = cell_scores(store, run_ids)
    found: Observations = {}
    metrics: dict[str, str] = {}
    notes: list[str] = []
    for cell in store.cells(run_ids):
        if tasks and cell.task not in tasks:
            continue
        name = metric or cell.metrics[0]
        if metrics.setdefault(cell.task, name) != name:
            raise HarnessError(f"task '{cell.task}': cells are scored by different metrics ({metrics[cell.task]}, {name}); pass --metric")
        get_metric(name, "--metric")
        items = table.get((cell.run_id, cell.cell_id), {})
        setting = parse_cell(cell)
        variants = [(setting, name)]
        if name == "acc":
            variants.append((dataclasses.replace(setting, calibration=CALIBRATED), CALIBRATED_METRIC))
        for key, score_name in variants:
            values = {item: s[score_name] for item, s in items.items() if score_name in s and s[score_name] == s[score_name]}
            if not values:
                continue
            if key in found:
                notes.append(f"{cell.task}: {cell.prompt} · {cell.selector} ({key.calibration}) appears in several runs; items merged")
            found.setdefault(key, {}).update(values)
    if not found:
        raise HarnessError(f"runs {', '.join(run_ids)}: no scored items" + (f" for tasks {', '.join(tasks)}" if tasks else ""))
    return found, metrics, notes


def _t_over_draws(means: tuple[float, ...], binary: bool, confidence: float, n: int) -> Interval:
    """The t CI of the mean over draws (as ``harness draws``); a proportion's t interval can
    overshoot [0, 1], the mean cannot, so it is clipped for 0/1 metrics. One draw has no
    spread to estimate: NaN bounds (None in JSON, "—" in the report), never ``(mean, mean)``."""
    interval = DrawSummary("", "", 0, "", "", "", means, n).interval(confidence)
    if interval is None:
        return Interval(float(np.mean(means)), float("nan"), float("nan"), n, ONE_DRAW)
    low, high = interval
    if binary:
        low, high = max(0.0, low), min(1.0, high)
    return Interval(float(np.mean(means)), low, high, n, f"t over {len(means)} draws")


def _level(name: str, draws: list[dict[str, float]], binary: bool, confidence: float, resamples: int, seed: int) -> Level:
    """A setting pooled over its draws: item means over draws, CI over items (1 draw) or over draws."""
    per_item: dict[str, list[float]] = defaultdict(list)
    for draw in draws:
        for item, value in draw.items():
            per_item[item].append(value)
    scores = {item: float(np.mean(v)) for item, v in per_item.items()}
    if all(d == draws[0] for d in draws):  # a deterministic selector: its draws are copies, not replicates
        interval = mean_interval(list(scores.values()), binary, confidence, seed=seed, resamples=resamples)
    else:
        means = tuple(float(np.mean(list(d.values()))) for d in draws)
        interval = _t_over_draws(means, binary, confidence, len(scores))
    return Level(name, interval, len(draws), scores)


def analyse(store: Store, run_ids: Sequence[str], metric: str | None = None, *, tasks: Sequence[str] | None = None,
            confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Sensitivity:
    """Every factor's slices and the paired tests between selectors and calibration states."""
    found, metrics, notes = observations(store, run_ids, metric, tasks)
    kinds = {task: get_metric(name) for task, name in metrics.items()}
    pooled: dict[Setting, list[dict[str, float]]] = defaultdict(list)
    for setting in sorted(found):
        pooled[dataclasses.replace(setting, draw=0)].append(found[setting])

    def settings_for(factor: str) -> dict[Setting, Level]:
        if factor == "draw":
            return {s: _level(s.level("draw"), [v], kinds[s.task].kind == "binary", confidence, resamples, seed) for s, v in found.items()}
        chosen = {s: v for s, v in pooled.items() if _eligible(factor, s)}
        return {s: _level(s.level(factor), v, kinds[s.task].kind == "binary", confidence, resamples, seed) for s, v in chosen.items()}

    slices: list[Slice] = []
    tests: list[PairedTest] = []
    for factor in FACTORS:
        groups: dict[Setting, dict[str, Level]] = defaultdict(dict)
        for setting, level in settings_for(factor).items():
            blank = dataclasses.replace(setting, **{factor: -2 if factor in ("format", "draw") else ""})  # type: ignore[arg-type]
            groups[blank][level.name] = level
        factor_tests: list[tuple[str, str, str, str, PairedResult]] = []
        for blank, levels in sorted(groups.items()):
            if len(levels) < 2:
                continue
            definition = kinds[blank.task]
            ordered = tuple(levels[name] for name in sorted(levels, key=_level_key))
            over = None
            context = blank.context(factor)
            if factor == "draw" and all(lv.scores == ordered[0].scores for lv in ordered):
                # a deterministic selector (knn) repeats one draw: no spread to put a t CI on
                context += " · identical draws (deterministic selector)"
            elif factor == "draw":
                means = tuple(lv.mean for lv in ordered)
                over = _t_over_draws(means, definition.kind == "binary", confidence, len(means))
            slices.append(Slice(factor, blank.task, context, metrics[blank.task], definition.higher_is_better, ordered, over))
            if factor in PAIRED_FACTORS:
                for a, b in combinations(ordered, 2):
                    binary = definition.kind == "binary" and all(v in (0.0, 1.0) for lv in (a, b) for v in lv.scores.values())
                    result = compare_scores(a.scores, b.scores, "binary" if binary else "continuous", definition.higher_is_better,
                                            resamples=resamples, seed=seed, confidence=confidence)
                    factor_tests.append((blank.task, context, a.name, b.name, result))
        adjusted = holm([t[4].p_value for t in factor_tests]) if factor_tests else []
        tests.extend(PairedTest(factor, task, context, a, b, r, p) for (task, context, a, b, r), p in zip(factor_tests, adjusted))
    return Sensitivity(list(run_ids), slices, tests, confidence, notes)


def _eligible(factor: str, setting: Setting) -> bool:
    """Template slices compare templates as written; format slices only __fmt<i> variants of one template."""
    if factor == "template":
        return setting.format == NOT_A_FORMAT
    return setting.format >= 0 if factor == "format" else True


def _level_key(name: str) -> tuple[int, str]:
    """fmt2 before fmt10, draw 2 before draw 10; other levels alphabetically (uncalibrated first)."""
    digits = re.search(r"\d+$", name)
    if name in (UNCALIBRATED, CALIBRATED):
        return (0 if name == UNCALIBRATED else 1, name)
    return (int(digits.group()) if digits and name.rstrip("0123456789") in ("fmt", "draw ") else 0, name)
