"""Building blocks on item scores: one cell's interval, McNemar's exact test, Holm, Kendall τ.

The paired differences that verdicts rest on live in harness/stats/difference.py (Tango, bootstrap-t,
BCa); the multiplicity over many cells in harness/stats/best_set.py; power in harness/stats/power.py.
Distributions come from scipy; every resampling is seeded so the same scores always give the
same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.core.deps import LazyModule

stats = LazyModule("scipy.stats")

# McNemar switches from the exact binomial test to the continuity-corrected chi-square
# once there are this many discordant pairs (the usual textbook rule).
EXACT_MCNEMAR_BELOW = 25
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    method: str


def wilson(successes: float, n: float, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: sane at 0%, 100% and small n (unlike Wald)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half)), int(round(n)), "wilson")


def bootstrap(values: Sequence[float], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean, seeded so reports are reproducible."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size), "bootstrap")


def mean_interval(
    values: Sequence[float], binary: bool, confidence: float = 0.95, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> Interval:
    """Wilson for 0/1 scores, bootstrap otherwise."""
    clean = [v for v in values if v == v]  # drop NaN
    if binary:
        return wilson(sum(clean), len(clean), confidence)
    return bootstrap(clean, confidence, resamples=resamples, seed=seed)


# -- paired tests ---------------------------------------------------------------------
@dataclass(frozen=True)
class Significance:
    """A two-sided p-value and how it was obtained (``method`` is shown in reports)."""

    p_value: float
    method: str
    statistic: float = float("nan")


def mcnemar(a: Sequence[float], b: Sequence[float]) -> Significance:
    """McNemar's test on paired 0/1 outcomes: only the discordant pairs carry information.

    Exact two-sided binomial test (scipy.stats.binomtest) while the discordant count is
    small, chi-square with continuity correction above that.
    """
    x, y = _paired_arrays(a, b)
    only_a = int(np.sum((x == 1) & (y == 0)))
    only_b = int(np.sum((x == 0) & (y == 1)))
    return mcnemar_counts(only_a, only_b)


def mcnemar_counts(only_a: int, only_b: int) -> Significance:
    """McNemar from the two discordant counts (a right & b wrong, a wrong & b right)."""
    discordant = only_a + only_b
    if discordant == 0:
        return Significance(1.0, "mcnemar-exact", 0.0)
    if discordant < EXACT_MCNEMAR_BELOW:
        result = stats.binomtest(only_a, discordant, 0.5, alternative="two-sided")
        return Significance(float(result.pvalue), "mcnemar-exact", float(only_a))
    chi2 = (abs(only_a - only_b) - 1) ** 2 / discordant
    return Significance(float(stats.chi2.sf(chi2, df=1)), "mcnemar-chi2cc", float(chi2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(scaled, 1.0)
    return [float(v) for v in adjusted]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank agreement of two score lists over the same variants (tau-b, ties allowed)."""
    if len(x) < 2:
        return float("nan")
    tau = stats.kendalltau(x, y).statistic
    return float(tau) if tau == tau else float("nan")


def kendall_tau_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row of x (R, V) against the same row of y, vectorised over rows
    (the bootstrap CI of a variant ordering computes thousands of them)."""
    i, j = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    concordance = np.sum(sx * sy, axis=1)
    untied = np.sqrt(np.sum(sx != 0, axis=1) * np.sum(sy != 0, axis=1).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(untied > 0, concordance / untied, np.nan)


def _paired_arrays(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    return x, y
