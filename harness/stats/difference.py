"""The difference of two cells on the same items: an estimate, an interval and a test that agree.

Every comparison harness prints reduces to a ``Difference``: A − B in the metric's own units,
a confidence interval, a two-sided p-value, one-sided p-values at a margin (for equivalence),
and the minimum detectable effect. The interval and the test come from ONE statistic, so the
interval excludes 0 exactly when p < 1 − confidence; where a safety floor makes the test more
conservative than the interval (continuous metrics, below), the interval is widened to 0 so the
two still agree. Which engine runs depends on the data, never on a guess:

- **0/1 scores** (``kind: binary``): Tango's score interval for the difference of paired
  proportions (Tango 1998, Stat Med 17:891), with a continuity correction of half a count on
  b − c (the lattice step of b − c is 1, so ½ is Yates' half step). At Δ = 0 the statistic is
  McNemar's (|b − c| − ½)/√(b + c). An exact scan of every table at n = 10, 30, 100 (docs/compare.md)
  gives coverage ≥ 0.955 and test size ≤ 0.047; without the correction the size reaches 0.055.
  With clusters, counts are divided by the design effect (Rao–Scott-type adjustment).
- **continuous item scores**: the studentised (bootstrap-t) interval of the mean difference,
  resampling clusters (items when none are declared), with its p-value by inversion, floored by
  an exact or Monte Carlo sign-flip test so a handful of differing items cannot be "significant".
- **corpus statistics** (BLEU, chrF, macro-F1, MCC): the paired BCa bootstrap of the corpus
  statistic itself over items (clusters), p-value by inverting the BCa interval.

Equivalence within ±m (TOST) holds at level α when the (1 − 2α) interval lies inside (−m, m):
the same engine, so "equivalent" and "different" can never both be claimed at one α.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from harness.core.deps import LazyModule
from harness.stats.basics import DEFAULT_RESAMPLES

stats = LazyModule("scipy.stats")

CONTINUITY = 0.5  # half a count on b - c (see the module docstring)
MIN_INFORMATIVE = 10  # below this many differing units a resampling interval is not trusted for equivalence
SIGN_FLIP_EXACT_UP_TO = 16  # informative units for an exact sign-flip test (2^16 patterns)


def z_of(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


# -- Tango's score statistic (vectorised: the simulation tests call it on arrays) ------------
def tango_z(b: np.ndarray | float, c: np.ndarray | float, n: np.ndarray | float, delta: np.ndarray | float,
            correction: float = CONTINUITY) -> np.ndarray:
    """Score statistic of H0: p10 − p01 = delta for b = #(A right, B wrong), c = #(A wrong, B right).

    The variance is the multinomial's under the constraint, at the restricted MLE of p01
    (a quadratic: 2n q² − B q − c δ(1 − δ) = 0); |b − c − nδ| is shrunk by ``correction``.
    """
    b, c, n, d = (np.asarray(x, dtype=np.float64) for x in (b, c, n, delta))
    r = n - b - c
    big_b = b * (1 - d) + c * (1 - 3 * d) - 2 * r * d
    q = (big_b + np.sqrt(np.maximum(big_b * big_b + 8 * n * c * d * (1 - d), 0.0))) / (4 * n)
    var = n * (2 * q + d - d * d)
    num = b - c - n * d
    num = np.sign(num) * np.maximum(np.abs(num) - correction, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 1e-12, num / np.sqrt(np.maximum(var, 1e-300)), np.where(num == 0, 0.0, np.sign(num) * np.inf))
    return np.asarray(z, dtype=np.float64)


def tango_interval(b: np.ndarray | float, c: np.ndarray | float, n: np.ndarray | float, confidence: float = 0.95,
                   correction: float = CONTINUITY, iterations: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """{δ : |Z(δ)| ≤ z}: bisection on each side of the estimate (Z decreases in δ)."""
    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    z = z_of(confidence)
    estimate = np.where(n > 0, (b - c) / np.maximum(n, 1e-300), 0.0)
    bounds = []
    for side in (-1.0, 1.0):
        inside, outside = estimate.copy(), np.full(estimate.shape, side)
        for _ in range(iterations):
            mid = (inside + outside) / 2
            ok = np.abs(tango_z(b, c, n, mid, correction)) <= z
            inside, outside = np.where(ok, mid, inside), np.where(ok, outside, mid)
        bounds.append(np.where(np.abs(tango_z(b, c, n, outside, correction)) <= z, outside, inside))
    return bounds[0], bounds[1]


def tango_p(b: np.ndarray | float, c: np.ndarray | float, n: np.ndarray | float, correction: float = CONTINUITY) -> np.ndarray:
    """Two-sided p of Δ = 0: exactly the level at which the interval starts to exclude 0."""
    z = np.abs(tango_z(b, c, n, 0.0, correction))
    return np.minimum(1.0, 2 * stats.norm.sf(z))


# -- engines ----------------------------------------------------------------------------------
class Engine(ABC):
    """One statistic for A − B: its interval at any level and its one-sided p-values."""

    method: str
    estimate: float

    @abstractmethod
    def interval(self, confidence: float) -> tuple[float, float]:
        ...

    @abstractmethod
    def p_value(self) -> float:
        """Two-sided p of Δ = 0, consistent with ``interval``."""

    @abstractmethod
    def p_below(self, delta: float) -> float:
        """One-sided p of H0: Δ ≥ delta (small when the data say Δ < delta)."""

    @abstractmethod
    def p_above(self, delta: float) -> float:
        """One-sided p of H0: Δ ≤ delta (small when the data say Δ > delta)."""

    @abstractmethod
    def se(self) -> float:
        """Standard error of the estimate (for power: minimum detectable effect, items needed)."""


@dataclass
class TangoEngine(Engine):
    b: float  # A right, B wrong (effective counts when clustered)
    c: float
    n: float
    deff: float = 1.0

    def __post_init__(self) -> None:
        self.method = "tango-score" + ("+deff" if self.deff > 1 else "")
        self.estimate = (self.b - self.c) / self.n if self.n else float("nan")

    def interval(self, confidence: float) -> tuple[float, float]:
        low, high = tango_interval(self.b, self.c, self.n, confidence)
        return float(low), float(high)

    def p_value(self) -> float:
        return float(tango_p(self.b, self.c, self.n))

    def p_below(self, delta: float) -> float:
        return float(stats.norm.cdf(tango_z(self.b, self.c, self.n, delta)))

    def p_above(self, delta: float) -> float:
        return float(stats.norm.sf(tango_z(self.b, self.c, self.n, delta)))

    def se(self) -> float:
        """Null-hypothesis se (what McNemar's statistic divides by): √(b + c)/n."""
        return math.sqrt(max(self.b + self.c, 1.0)) / self.n


@dataclass
class BootstrapTEngine(Engine):
    """Studentised bootstrap of a ratio mean Σ D_c / Σ m_c over clusters (items by default).

    The cluster-robust (CR1) standard error is recomputed in every resample; the p-value and
    the interval read the same sorted t* values, so they agree by construction.
    """

    sums: np.ndarray  # per cluster: sum of the item differences
    sizes: np.ndarray  # per cluster: number of items
    weights: np.ndarray  # (B, C) resampling counts of clusters, shared across pairs for reproducibility
    method: str = "bootstrap-t"
    estimate: float = field(init=False)
    _se: float = field(init=False)
    _t: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        d, m = self.sums.astype(np.float64), self.sizes.astype(np.float64)
        self.estimate = float(d.sum() / m.sum())
        self._se = _cr1(d, m, self.estimate)
        w = self.weights
        total = w @ m
        est = (w @ d) / total
        c = d.size
        # Σ w (D - e m)² = Σ w D² - 2 e Σ w D m + e² Σ w m², one matrix product each
        resid = w @ (d * d) - 2 * est * (w @ (d * m)) + est * est * (w @ (m * m))
        se = np.sqrt(np.maximum(resid, 0.0) * c / max(c - 1, 1)) / total
        dev = est - self.estimate
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 1e-15, dev / se, np.where(np.abs(dev) < 1e-15, 0.0, np.sign(dev) * np.inf))
        self._t = np.sort(t)

    def _count_le(self, x: float) -> int:
        return int(np.searchsorted(self._t, x, side="right"))

    def _count_ge(self, x: float) -> int:
        return int(self._t.size - np.searchsorted(self._t, x, side="left"))

    def _t_at(self, delta: float) -> float:
        if self._se <= 1e-15:
            gap = self.estimate - delta
            return 0.0 if abs(gap) < 1e-15 else math.copysign(math.inf, gap)
        return (self.estimate - delta) / self._se

    def interval(self, confidence: float) -> tuple[float, float]:
        """{δ : p(δ) ≥ 1 − confidence} with p(δ) = 2 min(#t* ≥ t(δ), #t* ≤ t(δ)) + 1)/(B + 1)."""
        b = self._t.size
        k = math.ceil((1 - confidence) / 2 * (b + 1) - 1)  # both counts must reach k
        if k <= 0:
            return (-math.inf, math.inf)
        lo_t, hi_t = self._t[k - 1], self._t[b - k]
        if not (np.isfinite(lo_t) and np.isfinite(hi_t)):
            return (-math.inf if not np.isfinite(hi_t) else self.estimate - hi_t * self._se,
                    math.inf if not np.isfinite(lo_t) else self.estimate - lo_t * self._se)
        return (self.estimate - hi_t * self._se, self.estimate - lo_t * self._se)

    def p_value(self) -> float:
        return self._p_two_sided(0.0)

    def _p_two_sided(self, delta: float) -> float:
        t = self._t_at(delta)
        b = self._t.size
        return min(1.0, 2 * (min(self._count_ge(t), self._count_le(t)) + 1) / (b + 1))

    def p_below(self, delta: float) -> float:
        return (self._count_le(self._t_at(delta)) + 1) / (self._t.size + 1)

    def p_above(self, delta: float) -> float:
        return (self._count_ge(self._t_at(delta)) + 1) / (self._t.size + 1)

    def se(self) -> float:
        return self._se


@dataclass
class BCaEngine(Engine):
    """Paired BCa bootstrap of a corpus statistic difference (Efron 1987).

    ``replicates``: the difference recomputed on each joint resample of clusters;
    ``jackknife``: the difference with each cluster left out (for the acceleration).
    """

    estimate: float
    replicates: np.ndarray
    jackknife: np.ndarray
    method: str = "paired-bca"
    _sorted: np.ndarray = field(init=False)
    _z0: float = field(init=False)
    _a: float = field(init=False)

    def __post_init__(self) -> None:
        values = self.replicates[np.isfinite(self.replicates)]
        self._sorted = np.sort(values)
        b = max(values.size, 1)
        below = (np.sum(values < self.estimate) + 0.5 * np.sum(values == self.estimate)) / b
        self._z0 = float(stats.norm.ppf(min(max(below, 0.5 / b), 1 - 0.5 / b)))
        jack = self.jackknife[np.isfinite(self.jackknife)]
        centred = jack.mean() - jack if jack.size else np.zeros(1)
        denom = 6 * float(np.sum(centred**2)) ** 1.5
        self._a = float(np.sum(centred**3) / denom) if denom > 0 else 0.0

    def _quantile_level(self, z: float) -> float:
        shifted = self._z0 + z
        scale = 1 - self._a * shifted
        if scale <= 0:  # the BCa map saturates: the whole distribution lies on one side
            return 1.0 if z > 0 else 0.0
        return float(stats.norm.cdf(self._z0 + shifted / scale))

    def _bound(self, level: float) -> float:
        if self._sorted.size == 0:
            return float("nan")
        index = level * (self._sorted.size - 1)
        return float(np.interp(index, np.arange(self._sorted.size), self._sorted))

    def interval(self, confidence: float) -> tuple[float, float]:
        if self._sorted.size == 0 or self._sorted[0] == self._sorted[-1]:
            return (self.estimate, self.estimate) if self._sorted.size else (float("nan"), float("nan"))
        z = z_of(confidence)
        return self._bound(self._quantile_level(-z)), self._bound(self._quantile_level(z))

    def _level_excluding(self, delta: float, side: int) -> float:
        """Smallest one-sided tail level α at which the α-bound passes ``delta`` (bisection)."""
        low, high = 1e-9, 0.5
        passes: Callable[[float], bool] = (lambda a: self._bound(self._quantile_level(z_of(1 - 2 * a))) < delta) if side < 0 else \
            (lambda a: self._bound(self._quantile_level(-z_of(1 - 2 * a))) > delta)
        if not passes(high):
            return 1.0
        if passes(low):
            return low
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (low, mid) if passes(mid) else (mid, high)
        return high

    def p_value(self) -> float:
        if self._sorted.size == 0 or self._sorted[0] == self._sorted[-1]:
            return 1.0 if self.estimate == 0 or self._sorted.size == 0 else 1.0 / (self.replicates.size + 1)
        one_sided = min(self._level_excluding(0.0, -1), self._level_excluding(0.0, +1))
        return min(1.0, 2 * max(one_sided, 1.0 / (self.replicates.size + 1)))

    def p_below(self, delta: float) -> float:
        return max(self._level_excluding(delta, -1), 1.0 / (self.replicates.size + 1))

    def p_above(self, delta: float) -> float:
        return max(self._level_excluding(delta, +1), 1.0 / (self.replicates.size + 1))

    def se(self) -> float:
        return float(np.std(self._sorted, ddof=1)) if self._sorted.size > 1 else 0.0


def _cr1(sums: np.ndarray, sizes: np.ndarray, estimate: float) -> float:
    """Cluster-robust standard error of a ratio mean (CR1: the C/(C−1) small-sample factor)."""
    c = sums.size
    if c < 2:
        return 0.0
    resid = sums - estimate * sizes
    return float(math.sqrt(c / (c - 1) * float(np.sum(resid**2))) / float(sizes.sum()))


# -- the exact / Monte Carlo sign-flip floor ------------------------------------------------
def sign_flip_p(sums: np.ndarray, resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p of H0: cluster differences are symmetric about 0 (exact up to 2^16 patterns)."""
    d = sums[np.abs(sums) > 1e-15]
    if d.size == 0:
        return 1.0
    observed = abs(float(d.sum()))
    if d.size <= SIGN_FLIP_EXACT_UP_TO:
        signs = np.array(list(product((-1.0, 1.0), repeat=d.size)))
        totals = np.abs(signs @ d)
        return float(np.mean(totals >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(resamples, d.size))
    totals = np.abs(signs @ d)
    return float((np.sum(totals >= observed - 1e-12) + 1) / (resamples + 1))


# -- the result ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """A − B on paired units, in the metric's own units (never direction-flipped here)."""

    estimate: float
    low: float
    high: float
    confidence: float
    p_value: float
    method: str
    n: int  # paired items
    units: int  # resampling units: clusters when declared, else items
    informative: int  # units whose difference is not 0
    deff: float  # design effect of the clusters (1 without clusters)
    engine: Engine = field(repr=False, compare=False)
    floored: bool = False  # the p-value was raised by the sign-flip floor (and the interval widened to 0)

    def interval(self, confidence: float) -> tuple[float, float]:
        return agreeing_interval(self.engine, confidence, self.p_value, self.floored)

    @property
    def too_sparse(self) -> bool:
        """A resampling interval over a handful of differing units is not evidence of equivalence."""
        return self.method.startswith(("bootstrap-t", "paired-bca")) and self.informative < MIN_INFORMATIVE

    def p_equivalence(self, margin: float) -> float:
        """TOST p of H0: |Δ| ≥ margin; below α means 'equivalent within ±margin' at level α."""
        if margin <= 0 or self.too_sparse:
            return 1.0
        return max(self.engine.p_below(margin), self.engine.p_above(-margin))

    def p_not_worse_by(self, margin: float, higher_is_better: bool) -> float:
        """One-sided p of H0: "A is worse than B by at least ``margin``" (small: A is within the margin or better)."""
        if margin <= 0 or self.too_sparse:
            return 1.0
        return self.engine.p_above(-margin) if higher_is_better else self.engine.p_below(margin)

    @property
    def se(self) -> float:
        return self.engine.se()


def agreeing_interval(engine: Engine, confidence: float, p_value: float, floored: bool) -> tuple[float, float]:
    """The engine's interval, widened to 0 when the sign-flip floor made the test non-significant,
    so the interval and the reported p-value never disagree."""
    low, high = engine.interval(confidence)
    if floored and p_value >= 1 - confidence:
        low, high = min(low, 0.0), max(high, 0.0)
    return low, high


def binary_difference(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None, confidence: float = 0.95) -> Difference:
    """Tango's interval for paired 0/1 scores; with clusters, counts scaled by the design effect."""
    d = a - b
    n = d.size
    n10, n01 = float(np.sum(d > 0)), float(np.sum(d < 0))
    deff, units = 1.0, n
    if clusters is not None:
        sums, sizes = cluster_sums(d, clusters)
        units = sums.size
        deff = design_effect(d, sums, sizes)
        informative = int(np.sum(np.abs(sums) > 0)) if units else 0
    else:
        informative = int(n10 + n01)
    engine = TangoEngine(n10 / deff, n01 / deff, n / deff, deff)
    low, high = engine.interval(confidence)
    return Difference(engine.estimate, low, high, confidence, engine.p_value(), engine.method, n, units, informative, deff, engine)


def continuous_difference(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None, confidence: float = 0.95,
                          resamples: int = DEFAULT_RESAMPLES, seed: int = 0, weights: np.ndarray | None = None) -> Difference:
    """Bootstrap-t of the mean difference over clusters (items), floored by a sign-flip test.

    ``weights`` (B, C): resampling counts shared by the pairs of one comparison (else drawn from ``seed``).
    """
    d = a - b
    sums, sizes = cluster_sums(d, clusters) if clusters is not None else (d, np.ones_like(d))
    if weights is None or weights.shape[1] != sums.size:
        weights = resample_weights(sums.size, resamples, seed)
    engine = BootstrapTEngine(sums, sizes, weights, method="bootstrap-t" + ("/clusters" if clusters is not None else ""))
    p, exact = engine.p_value(), sign_flip_p(sums, seed=seed)
    floored = exact > p
    p = max(p, exact)
    low, high = agreeing_interval(engine, confidence, p, floored)
    deff = design_effect(d, sums, sizes) if sums.size != d.size else 1.0
    informative = int(np.sum(np.abs(sums) > 1e-15))
    return Difference(engine.estimate, low, high, confidence, p, engine.method, int(d.size), int(sums.size), informative, deff,
                      engine, floored)


def corpus_difference(estimate: float, replicates: np.ndarray, jackknife: np.ndarray, n: int, units: int, informative: int,
                      confidence: float = 0.95) -> Difference:
    """BCa difference of a corpus statistic from precomputed joint replicates."""
    engine = BCaEngine(estimate, replicates, jackknife)
    low, high = engine.interval(confidence)
    return Difference(estimate, low, high, confidence, engine.p_value(), engine.method, n, units, informative, 1.0, engine)


# -- clusters and resampling -------------------------------------------------------------------
def cluster_codes(clusters: np.ndarray) -> tuple[np.ndarray, int]:
    """Each item's cluster as 0..C-1 in first-seen order (np.unique alone would sort by label)."""
    if clusters.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()], int(order.size)


def cluster_sums(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (in first-seen order): the sum of ``values`` (rows, for 2-D) and the number of items."""
    codes, count = cluster_codes(clusters)
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=count), sizes
    sums = np.zeros((count, values.shape[1]))
    np.add.at(sums, codes, values)
    return sums, sizes


def design_effect(values: np.ndarray, sums: np.ndarray, sizes: np.ndarray) -> float:
    """Cluster-robust variance of the mean over its iid variance (≥ 1: clusters never narrow a CI)."""
    n = values.size
    if n < 2 or sums.size < 2:
        return 1.0
    mean = float(values.mean())
    iid = float(np.sum((values - mean) ** 2)) / (n - 1) / n
    if iid <= 0:
        return 1.0
    clustered = _cr1(sums, sizes, mean) ** 2
    return max(1.0, clustered / iid)


def resample_weights(units: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, units) counts of each unit in each bootstrap resample, seeded."""
    rng = np.random.default_rng(seed)
    if units == 0:
        return np.zeros((resamples, 0))
    picks = rng.integers(0, units, size=(resamples, units))
    weights = np.zeros((resamples, units))
    np.add.at(weights, (np.repeat(np.arange(resamples), units), picks.ravel()), 1.0)
    return weights


def difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, kind: str, clusters: Sequence[str] | np.ndarray | None = None,
               confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, weights: np.ndarray | None = None) -> Difference:
    """The engine the data call for: Tango for 0/1 scores, bootstrap-t otherwise."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    groups = None if clusters is None else np.asarray(clusters)
    if groups is not None and groups.dtype == object:
        groups = groups.astype(str)  # mixed labels: compare as text
    if x.size == 0:
        engine = TangoEngine(0.0, 0.0, 0.0)
        return Difference(float("nan"), float("nan"), float("nan"), confidence, 1.0, "none", 0, 0, 0, 1.0, engine)
    binary = kind == "binary" and bool(np.all(np.isin(x, (0.0, 1.0))) and np.all(np.isin(y, (0.0, 1.0))))
    if binary:
        return binary_difference(x, y, groups, confidence)
    return continuous_difference(x, y, groups, confidence, resamples, seed, weights)

