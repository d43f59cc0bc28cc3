"""harness.stats.difference: each engine's interval and test agree, Tango's interval is checked against
an exact enumeration of every table, and the corpus/bootstrap engines on known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln

from harness.stats.difference import (
    BootstrapTEngine,
    binary_difference,
    cluster_sums,
    continuous_difference,
    design_effect,
    difference,
    resample_weights,
    sign_flip_p,
    tango_interval,
    tango_p,
    tango_z,
)


def tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = b + c <= n
    return b[keep].astype(float), c[keep].astype(float)


def probability(n: int, b: np.ndarray, c: np.ndarray, p10: float, p01: float) -> np.ndarray:
    r = n - b - c
    log = gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(r + 1) + b * np.log(p10) + c * np.log(p01) + r * np.log1p(-p10 - p01)
    return np.exp(log)


@pytest.mark.parametrize("n", [10, 30, 100])
def test_tango_exact_coverage_and_size(n: int) -> None:
    """Exact (enumerated, not simulated) coverage over a grid of paired-proportion settings, and the
    two-sided test's size at Δ = 0: the guarantees docs/compare.md states."""
    b, c = tables(n)
    low, high = tango_interval(b, c, np.full(b.shape, float(n)))
    p = tango_p(b, c, float(n))
    worst_cover, worst_size = 1.0, 0.0
    for p10 in np.arange(0.02, 0.5, 0.04):
        for p01 in np.arange(0.02, 0.5, 0.04):
            if p10 + p01 > 0.9:
                continue
            weight = probability(n, b, c, p10, p01)
            delta = p10 - p01
            worst_cover = min(worst_cover, float(np.sum(weight * ((low <= delta + 1e-12) & (delta - 1e-12 <= high)))))
        weight = probability(n, b, c, p10, p10)
        worst_size = max(worst_size, float(np.sum(weight * (p < 0.05))))
    assert worst_cover >= 0.95, worst_cover
    assert worst_size <= 0.05, worst_size


def test_interval_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    b, c = tables(40)
    low, high = tango_interval(b, c, np.full(b.shape, 40.0), 0.95)
    p = tango_p(b, c, 40.0)
    excludes = (low > 0) | (high < 0)
    assert np.array_equal(excludes, p < 0.05 - 1e-9) or np.all(np.abs(p[excludes != (p < 0.05)] - 0.05) < 1e-6)


def test_tango_is_mcnemar_at_zero_with_half_correction() -> None:
    # (|b - c| - 1/2) / sqrt(b + c): McNemar's statistic with half of Yates' correction
    assert tango_z(12, 4, 50, 0.0) == pytest.approx((12 - 4 - 0.5) / np.sqrt(16))
    assert tango_p(5, 0, 10) == pytest.approx(2 * stats.norm.sf(4.5 / np.sqrt(5)))
    assert tango_p(0, 0, 10) == 1.0


def test_no_discordance_is_not_certainty() -> None:
    """10 ties out of 10 items: no difference seen, but the interval is not [0, 0] and equivalence
    within ±10 points is not claimed (a zero-width interval would claim it)."""
    d = binary_difference(np.ones(10), np.ones(10))
    assert d.low < -0.1 and d.high > 0.1 and d.p_value == 1.0
    assert d.p_equivalence(0.10) > 0.05


def test_tost_is_the_90_percent_interval_inside_the_margin() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = (rng.random(200) < 0.7).astype(float), (rng.random(200) < 0.7).astype(float)
        d = binary_difference(a, b)
        low, high = d.interval(0.90)
        for margin in (0.03, 0.08, 0.15):
            assert (d.p_equivalence(margin) < 0.05) == (-margin < low and high < margin)


def test_clusters_widen_a_binary_interval_by_the_design_effect() -> None:
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(20), 10).astype(str)
    shift = np.repeat(rng.normal(0, 1.5, 20), 10)  # whole clusters move together
    a = (rng.random(200) < 1 / (1 + np.exp(-shift - 0.3))).astype(float)
    b = (rng.random(200) < 1 / (1 + np.exp(-shift))).astype(float)
    plain, clustered = binary_difference(a, b), binary_difference(a, b, clusters)
    assert clustered.deff >= 1 and clustered.units == 20
    assert clustered.high - clustered.low >= plain.high - plain.low - 1e-12
    assert clustered.estimate == pytest.approx(plain.estimate)


def test_design_effect_of_independent_items_is_one_and_of_copies_is_the_cluster_size() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    sums, sizes = cluster_sums(x, np.arange(400).astype(str))
    assert design_effect(x, sums, sizes) == pytest.approx(1.0)
    copies = np.repeat(rng.normal(size=50), 8)
    sums, sizes = cluster_sums(copies, np.repeat(np.arange(50), 8).astype(str))
    assert design_effect(copies, sums, sizes) == pytest.approx(8.0, rel=0.05)


def test_bootstrap_t_interval_and_p_agree_by_construction() -> None:
    rng = np.random.default_rng(2)
    for shift in (0.0, 0.02, 0.05, 0.1):
        x = rng.beta(2, 2, 80)
        y = np.clip(x - shift + rng.normal(0, 0.1, 80), 0, 1)
        d = continuous_difference(x, y, resamples=999, seed=1)
        for level in (0.9, 0.95, 0.99):
            low, high = d.interval(level)
            assert (d.p_value < 1 - level) == (low > 0 or high < 0), (shift, level, d.p_value, low, high)


def test_bootstrap_t_matches_the_t_interval_on_large_normal_samples() -> None:
    rng = np.random.default_rng(5)
    d = rng.normal(0.1, 1.0, 4000)
    engine = BootstrapTEngine(d, np.ones_like(d), resample_weights(d.size, 2000, 0))
    low, high = engine.interval(0.95)
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    assert low == pytest.approx(d.mean() - half, abs=0.006) and high == pytest.approx(d.mean() + half, abs=0.006)


def test_sign_flip_floor_keeps_a_few_differing_items_from_significance() -> None:
    # 3 of 40 items differ, all in A's favour: exact sign-flip p = 2/8 = 0.25, whatever the bootstrap says
    a, b = np.zeros(40), np.zeros(40)
    a[:3] = [0.9, 0.8, 0.7]
    d = continuous_difference(a, b, resamples=999)
    assert d.p_value == pytest.approx(0.25) and d.floored
    assert d.low <= 0 <= d.high  # the interval agrees with the floored test
    assert d.p_equivalence(0.5) == 1.0  # a handful of differing items is not evidence of equivalence either
    assert sign_flip_p(np.array([1.0, -1.0])) == 1.0


def test_difference_picks_tango_only_for_zero_one_scores() -> None:
    assert difference([1, 0, 1], [0, 0, 1], "binary").method == "tango-score"
    assert difference([1, 0.5, 1], [0, 0, 1], "binary").method.startswith("bootstrap-t")  # not 0/1 after all
    assert difference([0.2, 0.5, 0.9], [0.1, 0.4, 0.2], "continuous").method.startswith("bootstrap-t")
    empty = difference([], [], "binary")
    assert empty.n == 0 and empty.p_value == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        difference([1, 0], [1], "binary")
