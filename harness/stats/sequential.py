"""Anytime-valid confidence sequences for the mean of bounded scores.

A confidence sequence (CS) is a sequence of intervals C_1, C_2, ... that contains the mean at
*every* time simultaneously with probability >= 1 - alpha: P(for all t, mu in C_t) >= 1 - alpha.
So one may look after every item, stop whenever the data say so and still keep the guarantee,
which a fixed-n interval looked at repeatedly does not (tests/stats/test_sequential.py measures
both). This is what lets ``harness.stats.racing`` stop evaluating a cell early.

The method is the predictable plug-in empirical-Bernstein CS (PrPl-EB) of Waudby-Smith & Ramdas
(2023), "Estimating means of bounded random variables by betting", JRSS-B 86(1):1-27, Theorem 2
with eqs. (13)-(15), and its without-replacement form (their Section 6; Theorem 5) for the mean of
a finite set of N items seen in a uniformly random order. On values rescaled to [0, 1]:

    mu_t = (1/2 + sum_{i<=t} x_i) / (t + 1)                 sigma2_t = (1/4 + sum_{i<=t} (x_i - mu_i)^2) / (t + 1)
    lambda_t = min(sqrt(2 log(1/a) / (sigma2_{t-1} t log(1 + t))), c)          (a = alpha/2 per side, c = 1/2)
    pen_t = sum_{i<=t} (x_i - mu_{i-1})^2 (-log(1 - lambda_i) - lambda_i)     (v_i psi_E(lambda_i) of the paper)
    lower_t = (sum lambda_i (x_i + Z_i) - log(1/a) - pen_t) / sum lambda_i (1 + W_i)

with Z_i = W_i = 0 for i.i.d. values, and Z_i = S_{i-1}/(N - i + 1), W_i = (i - 1)/(N - i + 1)
without replacement; the upper bound is the same on 1 - x. Each bound is intersected with all
earlier ones (a running intersection, still valid because the guarantee is simultaneous). The
formulas are those of the ``confseq`` package's ``predmix_lower_cs`` and ``lambda_predmix_eb``
(checked in the tests), except that v_i is centred on the regularised mean mu_{i-1}, as in the
paper, rather than on the raw running mean.

The arithmetic is incremental (``start``/``extend``) and vectorised over a batch of sequences,
so a race updates every pair of cells in one pass and a simulation runs thousands of sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
METHOD = "predictable plug-in empirical Bernstein CS (Waudby-Smith & Ramdas 2023)"


@dataclass(frozen=True)
class CSState:
    """Running sums of a batch of B sequences on the [0, 1] scale; every array has shape (B,)."""

    alpha: float  # two-sided level of each sequence's CS
    population: int | None  # N for a finite set seen without replacement, None for i.i.d. values
    truncation: float  # the largest bet lambda (c in the paper)
    t: NDArray[np.int64]  # values seen
    total: Array  # sum of x
    squares: Array  # sum of (x_i - mu_i)^2, for sigma2
    weight: Array  # sum of lambda_i (1 + W_i)
    low_sum: Array  # sum of lambda_i (x_i + Z_i)
    high_sum: Array  # sum of lambda_i (1 - x_i + Z'_i)
    penalty: Array  # sum of v_i psi_E(lambda_i)
    lower: Array  # running-intersection bounds
    upper: Array

    @property
    def size(self) -> int:
        return int(self.t.shape[0])


_BATCH = ("t", "total", "squares", "weight", "low_sum", "high_sum", "penalty", "lower", "upper")


def start(size: int, alpha: float, population: int | None = None, truncation: float = 0.5) -> CSState:
    """An empty batch of ``size`` sequences, each a two-sided CS at level ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < truncation < 1:
        raise ValueError(f"truncation must be in (0, 1), got {truncation}")
    if population is not None and population < 1:
        raise ValueError(f"population must be a positive number of items, got {population}")
    zeros = np.zeros(size)
    return CSState(alpha, population, truncation, np.zeros(size, dtype=np.int64), zeros, zeros, zeros, zeros, zeros, zeros, zeros, np.ones(size))


def take(state: CSState, index: NDArray[np.intp]) -> CSState:
    """The sub-batch at ``index`` (to extend sequences that get different numbers of new values)."""
    return replace(state, **{name: getattr(state, name)[index] for name in _BATCH})


def put(state: CSState, index: NDArray[np.intp], part: CSState) -> CSState:
    """``state`` with the sequences at ``index`` replaced by ``part``'s."""
    changes = {}
    for name in _BATCH:
        array = getattr(state, name).copy()
        array[index] = getattr(part, name)
        changes[name] = array
    return replace(state, **changes)


def extend(state: CSState, x: ArrayLike) -> tuple[CSState, Array, Array]:
    """Add m new values in [0, 1] to each sequence (x has shape (B, m)); returns the new state
    and the running-intersection bounds after each new value, both of shape (B, m)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != state.size:
        raise ValueError(f"expected values of shape ({state.size}, m), got {x.shape}")
    if x.shape[1] == 0:
        empty = np.zeros((state.size, 0))
        return state, empty, empty
    if not np.all((x >= 0) & (x <= 1)):
        raise ValueError("values must be finite and in [0, 1] after rescaling")
    m = x.shape[1]
    log_a = math.log(2 / state.alpha)  # log(1/a) with a = alpha/2 per side
    t = state.t[:, None] + np.arange(1, m + 1)[None, :]  # 1-based time of each new value
    if state.population is not None and int(t[:, -1].max()) > state.population:
        raise ValueError(f"more values than the population of {state.population}")
    cum = state.total[:, None] + np.cumsum(x, axis=1)
    before = cum - x  # S_{t-1}
    mean_prev = (0.5 + before) / t  # mu_{t-1}
    mean_now = (0.5 + cum) / (t + 1)  # mu_t
    squares = state.squares[:, None] + np.cumsum((x - mean_now) ** 2, axis=1)
    var_prev = (0.25 + squares - (x - mean_now) ** 2) / t  # sigma2_{t-1}
    lam = np.minimum(np.sqrt(2 * log_a / (var_prev * t * np.log1p(t))), state.truncation)
    psi = -np.log1p(-lam) - lam
    if state.population is None:
        z_low = z_high = w = np.zeros_like(x)
    else:
        left = state.population - t + 1.0
        z_low, z_high, w = before / left, (t - 1 - before) / left, (t - 1) / left
    weight = state.weight[:, None] + np.cumsum(lam * (1 + w), axis=1)
    low_sum = state.low_sum[:, None] + np.cumsum(lam * (x + z_low), axis=1)
    high_sum = state.high_sum[:, None] + np.cumsum(lam * (1 - x + z_high), axis=1)
    penalty = state.penalty[:, None] + np.cumsum((x - mean_prev) ** 2 * psi, axis=1)
    lower = np.maximum((low_sum - log_a - penalty) / weight, 0.0)
    upper = np.minimum(1 - (high_sum - log_a - penalty) / weight, 1.0)
    lower = np.maximum.accumulate(np.concatenate([state.lower[:, None], lower], axis=1), axis=1)[:, 1:]
    upper = np.minimum.accumulate(np.concatenate([state.upper[:, None], upper], axis=1), axis=1)[:, 1:]
    new = CSState(
        state.alpha, state.population, state.truncation, t[:, -1], cum[:, -1], squares[:, -1], weight[:, -1],
        low_sum[:, -1], high_sum[:, -1], penalty[:, -1], lower[:, -1], upper[:, -1],
    )
    return new, lower, upper


@dataclass(frozen=True)
class ConfidenceSequence:
    """Bounds after each value, in the values' own units; shape of the values given."""

    lower: Array
    upper: Array
    alpha: float
    population: int | None
    method: str = METHOD

    def covers(self, mean: float | ArrayLike) -> NDArray[np.bool_]:
        """Whether every bound so far contains ``mean``, per sequence (the event the CS promises)."""
        mean = np.asarray(mean, dtype=np.float64)[..., None]
        return np.all((self.lower <= mean) & (mean <= self.upper), axis=-1)


def confidence_sequence(
    values: ArrayLike, alpha: float = 0.05, bounds: tuple[float, float] = (0.0, 1.0),
    population: int | None = None, truncation: float = 0.5,
) -> ConfidenceSequence:
    """The CS after each of ``values`` (shape (n,) or (B, n)) known to lie in ``bounds``.

    ``population=N`` gives a CS for the mean of a finite set of N items seen in a uniformly random
    order without replacement (a benchmark's score); otherwise for the mean of i.i.d. draws.
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    if not hi > lo:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
    v = np.asarray(values, dtype=np.float64)
    flat = v.reshape(1, -1) if v.ndim == 1 else v
    if flat.ndim != 2:
        raise ValueError(f"values must have shape (n,) or (B, n), got {v.shape}")
    if not np.all((flat >= lo) & (flat <= hi)):
        raise ValueError(f"values must be finite and in [{lo}, {hi}]")
    _, lower, upper = extend(start(flat.shape[0], alpha, population, truncation), (flat - lo) / (hi - lo))
    return ConfidenceSequence((lo + lower * (hi - lo)).reshape(v.shape), (lo + upper * (hi - lo)).reshape(v.shape), alpha, population)

