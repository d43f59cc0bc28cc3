"""How many items a comparison needs, and what it can detect with the items it has.

The formulas match the tests harness runs, so a plan is a promise the simulation tests check
(tests/stats/test_simulation.py: the planned n reaches the planned power):

- **0/1 metrics, paired**: the McNemar/Tango statistic with its ½-count continuity correction.
  With discordance ψ = P(the two cells disagree on an item) and true difference δ, the
  statistic is approximately normal with mean (n|δ| − ½)/√(nψ) and sd √((ψ − δ²)/ψ)
  (Connor 1987, Biometrics 43:207, plus the correction), so
  power(n) = Φ((n|δ| − ½ − z_{1−α/2} √(nψ)) / √(n(ψ − δ²))).
- **continuous metrics and corpus statistics**: a normal approximation with the per-item sd of
  the differences, power(n) = Φ(√n |δ| / σ − z_{1−α/2}).
- **equivalence within ±m** (TOST at level α) when the true difference is 0: both one-sided
  tests must reject, which needs m ≥ (z_{1−α} + z_{1−β/2}) σ/√n.

Clusters: a design effect D multiplies the variance, so the items needed are multiplied by D.
Several cells: the best-set procedure adjusts for all K(K−1)/2 pairs; plans use Bonferroni
(α / pairs), which is conservative for the step-down max-T procedure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from harness.core.deps import LazyModule

stats = LazyModule("scipy.stats")


MAX_ITEMS = 10**9
PowerFn = Callable[[int], float]


def _z(p: float) -> float:
    return float(stats.norm.ppf(p))


def pairs_alpha(alpha: float, cells: int) -> float:
    """The per-pair level a plan for ``cells`` cells uses (Bonferroni over all pairs)."""
    pairs = max(1, cells * (cells - 1) // 2)
    return alpha / pairs


def mcnemar_power(n: float, delta: float, discordance: float, alpha: float = 0.05) -> float:
    """Approximate power of the paired 0/1 test at n items (see the module docstring)."""
    delta = abs(delta)
    if n <= 0 or discordance <= 0 or delta <= 0:
        return 0.0
    if delta >= discordance:
        return 1.0
    spread = math.sqrt(n * (discordance - delta * delta))
    return float(stats.norm.cdf((n * delta - 0.5 - _z(1 - alpha / 2) * math.sqrt(n * discordance)) / spread))


def normal_power(n: float, delta: float, sd: float, alpha: float = 0.05) -> float:
    if n <= 0 or delta == 0:
        return 0.0
    if sd <= 0:
        return 1.0
    return float(stats.norm.cdf(math.sqrt(n) * abs(delta) / sd - _z(1 - alpha / 2)))


def _smallest_n(power_at: PowerFn, target: float) -> int:
    """Smallest n with power_at(n) ≥ target (doubling, then bisection); MAX_ITEMS if unreachable."""
    high = 2
    while power_at(high) < target:
        high *= 2
        if high > MAX_ITEMS:
            return MAX_ITEMS
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= target else (mid, high)
    return high



def mcnemar_items(delta: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items for the 0/1 test to detect ``delta`` with ``power`` at level ``alpha``."""
    if delta == 0 or discordance <= 0:
        return MAX_ITEMS
    return _smallest_n(lambda n: mcnemar_power(n, delta, discordance, alpha), power)


def normal_items(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    if delta == 0:
        return MAX_ITEMS
    return max(2, math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / abs(delta)) ** 2))


def equivalence_items(margin: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Items for TOST to show equivalence within ±margin with ``power`` when the truth is 0."""
    if margin <= 0:
        return MAX_ITEMS
    return max(2, math.ceil(((_z(1 - alpha) + _z(1 - (1 - power) / 2)) * sd / margin) ** 2))


def mcnemar_mde(n: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |δ| the 0/1 test detects with ``power`` at n items and discordance ψ."""
    if n <= 0 or discordance <= 0:
        return float("nan")
    low, high = 0.0, discordance
    if mcnemar_power(n, high * (1 - 1e-9), discordance, alpha) < power:
        return discordance  # even the largest difference this discordance allows is not detectable
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if mcnemar_power(n, mid, discordance, alpha) < power else (low, mid)
    return high


def normal_mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |δ| detectable with ``power`` when the estimate has standard error ``se``."""
    return (_z(1 - alpha / 2) + _z(power)) * se


@dataclass(frozen=True)
class Plan:
    """What a comparison needs: items to detect ``mde``, and to show equivalence within ``margin``."""

    kind: str  # binary | continuous
    mde: float
    alpha: float  # per-pair level actually used (after the multiple-cell adjustment)
    power: float
    cells: int
    items_detect: int
    items_equivalence: int | None
    baseline: float | None = None
    discordance: float | None = None
    sd: float | None = None
    deff: float = 1.0
    source: str = "assumed"  # where discordance / sd came from: assumed, given, pilot run ...

    @property
    def items(self) -> int:
        return max(self.items_detect, self.items_equivalence or 0)


def independent_discordance(baseline: float, mde: float) -> float:
    """Discordance of two cells with accuracies p and p + δ whose errors are independent.

    Real prompt variants of one model agree far more often (lower discordance), so this is a
    conservative default when no pilot run is available.
    """
    other = min(1.0, max(0.0, baseline + mde))
    return baseline * (1 - other) + other * (1 - baseline)


def plan_binary(mde: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8, cells: int = 2,
                margin: float | None = None, deff: float = 1.0, baseline: float | None = None, source: str = "given") -> Plan:
    level = pairs_alpha(alpha, cells)
    detect = mcnemar_items(mde, discordance, level, power)
    equivalent = equivalence_items(margin, math.sqrt(discordance), level, power) if margin else None
    scale: Callable[[float], int] = (lambda n: min(MAX_ITEMS, math.ceil(n * deff)))
    return Plan("binary", mde, level, power, cells, scale(detect), scale(equivalent) if equivalent else None,
                baseline, discordance, None, deff, source)


def plan_continuous(mde: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, cells: int = 2,
                    margin: float | None = None, deff: float = 1.0, source: str = "given") -> Plan:
    level = pairs_alpha(alpha, cells)
    detect = normal_items(mde, sd, level, power)
    equivalent = equivalence_items(margin, sd, level, power) if margin else None
    scale: Callable[[float], int] = (lambda n: min(MAX_ITEMS, math.ceil(n * deff)))
    return Plan("continuous", mde, level, power, cells, scale(detect), scale(equivalent) if equivalent else None,
                None, None, sd, deff, source)
