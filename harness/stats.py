"""Statistics on item scores: one cell's CI, paired tests of two cells, Holm, rank agreement.

Distributions come from scipy (binomial, normal, bootstrap, permutation); the code here
only decides which test fits which metric kind, and seeds every resampling so the same
scores always give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

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


def wilson(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: sane at 0%, 100% and small n (unlike Wald)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half)), n, "wilson")


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


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[Interval, Significance]:
    """CI of mean(a - b) by resampling items (pairs stay together), and a two-sided p-value.

    The p-value is twice the smaller share of resampled differences on either side of 0
    (percentile-bootstrap test), floored at 1 / resamples.
    """
    x, y = _paired_arrays(a, b)
    diff = x - y
    if diff.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "paired-bootstrap"), Significance(1.0, "paired-bootstrap")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    if np.all(diff == diff[0]):
        p = 1.0 if diff[0] == 0 else 1.0 / resamples
    else:
        p = min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0)))
        p = max(p, 1.0 / resamples)
    interval = Interval(float(diff.mean()), float(low), float(high), int(diff.size), "paired-bootstrap")
    return interval, Significance(float(p), "paired-bootstrap", float(diff.mean()))


def paired_permutation(a: Sequence[float], b: Sequence[float], resamples: int = 10000, seed: int = 0) -> Significance:
    """Sign-flip permutation test of mean(a - b) (scipy.stats.permutation_test, paired).

    Exact (all 2^n sign patterns) when that is fewer than ``resamples``.
    """
    x, y = _paired_arrays(a, b)
    if x.size == 0 or np.all(x == y):
        return Significance(1.0, "paired-permutation", 0.0)

    def statistic(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u - v, axis=axis)

    options = {"permutation_type": "samples", "vectorized": True, "n_resamples": resamples, "alternative": "two-sided"}
    try:
        result = stats.permutation_test((x, y), statistic, rng=np.random.default_rng(seed), **options)
    except TypeError:  # scipy < 1.15 calls the generator random_state
        result = stats.permutation_test((x, y), statistic, random_state=np.random.default_rng(seed), **options)
    return Significance(float(min(1.0, result.pvalue)), "paired-permutation", float(result.statistic))


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


def items_needed(diff: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired items needed to detect the observed mean difference (normal approximation).

    n = ((z_{1-alpha/2} + z_{power}) * sd(diff) / mean(diff))^2; inf when the mean is 0.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.size < 2 or d.mean() == 0:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.ceil((z * d.std(ddof=1) / abs(d.mean())) ** 2))


def _paired_arrays(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    return x, y
