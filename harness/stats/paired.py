"""Two cells on the same items: match by stable item id, then test the difference.

Only items scored in both cells count; the result says how many were dropped and why
(missing from one cell, or a NaN score), so a comparison never silently shrinks. The
difference, its interval and its p-value are one ``harness.stats.difference.Difference``: Tango's
score interval for 0/1 scores, a studentised bootstrap for continuous item scores, a paired
BCa bootstrap of the corpus statistic itself for corpus metrics (BLEU, macro-F1: the number
that ranks the cells is the number that is tested). Declared clusters are resampled as units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from harness.stats.basics import DEFAULT_RESAMPLES, Interval
from harness.stats.difference import Difference, corpus_difference, difference

Kind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class Pairing:
    """Item ids in both cells (sorted), with both cells' scores, and what was left out."""

    item_ids: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def n(self) -> int:
        return len(self.item_ids)

    def dropped_text(self) -> str:
        return ", ".join(f"{count} {reason}" for reason, count in self.dropped.items() if count) or "none"


def pair(a: Mapping[str, float], b: Mapping[str, float]) -> Pairing:
    """Match two item-id -> score maps; drop items missing from one side or scored NaN."""
    dropped = {
        "only in A": len(a.keys() - b.keys()),
        "only in B": len(b.keys() - a.keys()),
        "NaN score": 0,
    }
    ids, xs, ys = [], [], []
    for item in sorted(a.keys() & b.keys()):
        x, y = a[item], b[item]
        if x != x or y != y:
            dropped["NaN score"] += 1
            continue
        ids.append(item)
        xs.append(float(x))
        ys.append(float(y))
    return Pairing(tuple(ids), tuple(xs), tuple(ys), {k: v for k, v in dropped.items() if v})


@dataclass(frozen=True)
class PairedResult:
    """A - B on the paired items, oriented so that 'wins' are wins of A by the metric's direction."""

    n: int
    dropped: dict[str, int]
    mean_a: float  # the cells' scores on the paired items (corpus statistic for corpus metrics)
    mean_b: float
    diff: Interval  # A - B with its interval (``difference.confidence``)
    p_value: float  # two-sided, consistent with ``diff``
    test: str
    wins: int  # items where A is better (by the metric's direction)
    ties: int
    losses: int
    higher_is_better: bool
    difference: Difference = field(repr=False, compare=False)
    warning: str | None = None

    @property
    def a_better(self) -> bool:
        """A is better than B by the point estimate (direction-aware)."""
        return self.diff.mean > 0 if self.higher_is_better else self.diff.mean < 0


def result_of(d: Difference, pairing: Pairing, higher_is_better: bool, mean_a: float, mean_b: float) -> PairedResult:
    a, b = np.asarray(pairing.a), np.asarray(pairing.b)
    sign = 1 if higher_is_better else -1
    delta = sign * (a - b)
    wins, losses = int(np.sum(delta > 0)), int(np.sum(delta < 0))
    warning = "no items in common: nothing to compare" if pairing.n == 0 else None
    interval = Interval(d.estimate, d.low, d.high, d.n, d.method)
    return PairedResult(pairing.n, dict(pairing.dropped), mean_a, mean_b, interval, d.p_value, d.method, wins,
                        pairing.n - wins - losses, losses, higher_is_better, d, warning)


def compare_pairing(
    pairing: Pairing, kind: Kind, higher_is_better: bool = True, *, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, clusters: Sequence[str] | None = None,
) -> PairedResult:
    """A − B on the paired item scores (mean metrics)."""
    a, b = np.asarray(pairing.a), np.asarray(pairing.b)
    d = difference(a, b, kind, clusters, confidence, resamples, seed)
    mean: Callable[[np.ndarray], float] = (lambda x: float(x.mean()) if x.size else float("nan"))
    return result_of(d, pairing, higher_is_better, mean(a), mean(b))


def compare_scores(
    a: Mapping[str, float], b: Mapping[str, float], kind: Kind, higher_is_better: bool = True, *,
    confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, clusters: Mapping[str, str] | None = None,
) -> PairedResult:
    """Pair two cells' item scores and test A against B."""
    pairing = pair(a, b)
    labels = [clusters.get(i, i) for i in pairing.item_ids] if clusters else None
    return compare_pairing(pairing, kind, higher_is_better, confidence=confidence, resamples=resamples, seed=seed, clusters=labels)


def corpus_result(
    pairing: Pairing, point: np.ndarray, replicates: np.ndarray, jackknife: np.ndarray, units: int, higher_is_better: bool,
    confidence: float = 0.95,
) -> PairedResult:
    """A − B of a corpus statistic from joint replicates of both cells (columns 0 = A, 1 = B)."""
    diffs = np.asarray(pairing.a) - np.asarray(pairing.b)
    d = corpus_difference(float(point[0] - point[1]), replicates[:, 0] - replicates[:, 1], jackknife[:, 0] - jackknife[:, 1],
                          pairing.n, units, int(np.sum(diffs != 0)), confidence)
    return result_of(d, pairing, higher_is_better, float(point[0]), float(point[1]))
