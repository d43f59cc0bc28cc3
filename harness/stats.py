"""Confidence intervals for one cell's scores (paired tests live in compare)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    method: str


def wilson(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: sane at 0%, 100% and small n (unlike Wald)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def bootstrap(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean, seeded so reports are reproducible."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size), "bootstrap")


def mean_interval(values: Sequence[float], binary: bool, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Wilson for 0/1 scores, bootstrap otherwise."""
    clean = [v for v in values if v == v]  # drop NaN
    if binary:
        return wilson(sum(clean), len(clean), confidence)
    return bootstrap(clean, confidence, seed=seed)
