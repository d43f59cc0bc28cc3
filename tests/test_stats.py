"""Every statistic against known answers (tests/cases/stats.json says where each comes from)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import stats

CASES = json.loads((Path(__file__).parent / "cases" / "stats.json").read_text())


@pytest.mark.parametrize("case", CASES["wilson"])
def test_wilson_bounds(case: dict) -> None:
    ci = stats.wilson(case["successes"], case["n"])
    assert ci.low == pytest.approx(case["low"], abs=1e-5)
    assert ci.high == pytest.approx(case["high"], abs=1e-5)
    assert ci.mean == pytest.approx(case["successes"] / case["n"])
    assert isinstance(ci.low, float) and ci.method == "wilson"


def test_wilson_of_nothing_is_nan() -> None:
    assert math.isnan(stats.wilson(0, 0).mean)


@pytest.mark.parametrize("case", CASES["mcnemar_counts"])
def test_mcnemar_textbook_tables(case: dict) -> None:
    result = stats.mcnemar_counts(case["only_a"], case["only_b"])
    assert result.method == case["method"]
    assert result.p_value == pytest.approx(case["p_value"], rel=1e-3)
    if "statistic" in case:
        assert result.statistic == pytest.approx(case["statistic"], rel=1e-5)


@pytest.mark.parametrize("case", CASES["mcnemar_items"])
def test_mcnemar_counts_discordant_items_only(case: dict) -> None:
    assert stats.mcnemar(case["a"], case["b"]).p_value == pytest.approx(case["p_value"])
    # concordant pairs carry no information: adding them changes nothing
    more = stats.mcnemar(case["a"] + [1, 0] * 20, case["b"] + [1, 0] * 20)
    assert more.p_value == pytest.approx(case["p_value"])


def test_mcnemar_switches_to_chi_square_at_the_threshold() -> None:
    below = stats.mcnemar_counts(stats.EXACT_MCNEMAR_BELOW - 10, 9)
    at = stats.mcnemar_counts(stats.EXACT_MCNEMAR_BELOW - 10, 10)
    assert below.method == "mcnemar-exact" and at.method == "mcnemar-chi2cc"
    assert 0.2 < below.p_value < 0.5 and 0.2 < at.p_value < 0.5  # similar tables, similar verdicts


@pytest.mark.parametrize("case", CASES["paired_permutation"])
def test_paired_permutation_exact(case: dict) -> None:
    result = stats.paired_permutation(case["a"], case["b"])
    assert result.p_value == pytest.approx(case["p_value"])


def test_paired_permutation_is_seeded_when_sampled() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40)
    first = stats.paired_permutation(a, b, resamples=999, seed=5)
    assert first == stats.paired_permutation(a, b, resamples=999, seed=5)
    assert 0 < first.p_value <= 1


@pytest.mark.parametrize("case", CASES["holm"])
def test_holm(case: dict) -> None:
    assert stats.holm(case["p"]) == pytest.approx(case["adjusted"])


@pytest.mark.parametrize("case", CASES["kendall_tau"])
def test_kendall_tau(case: dict) -> None:
    assert stats.kendall_tau(case["x"], case["y"]) == pytest.approx(case["tau"], abs=1e-5)


@pytest.mark.parametrize("case", CASES["paired_bootstrap"])
def test_paired_bootstrap_fixed_seed(case: dict) -> None:
    ci, test = stats.paired_bootstrap(case["a"], case["b"], resamples=case["resamples"], seed=case["seed"])
    assert ci.mean == pytest.approx(case["mean"])
    assert (ci.low, ci.high) == pytest.approx((case["low"], case["high"]))
    assert test.p_value == pytest.approx(case["p_value"])
    assert ci.low <= ci.mean <= ci.high
    # same seed, same answer; another seed moves the bounds only a little
    assert stats.paired_bootstrap(case["a"], case["b"], resamples=case["resamples"], seed=case["seed"])[0] == ci
    other, _ = stats.paired_bootstrap(case["a"], case["b"], resamples=case["resamples"], seed=case["seed"] + 1)
    assert other.low == pytest.approx(ci.low, abs=0.02) and other.high == pytest.approx(ci.high, abs=0.02)


def test_paired_bootstrap_ci_matches_normal_theory_on_large_samples() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.6, 0.2, 2000)
    b = a - rng.normal(0.05, 0.1, 2000)
    ci, test = stats.paired_bootstrap(a, b, resamples=4000, seed=1)
    d = a - b
    half = 1.959964 * d.std(ddof=1) / np.sqrt(d.size)
    assert ci.low == pytest.approx(d.mean() - half, abs=0.002)
    assert ci.high == pytest.approx(d.mean() + half, abs=0.002)
    assert test.p_value == pytest.approx(1 / 4000)  # far from 0: floored at 1/resamples


@pytest.mark.parametrize("case", CASES["bootstrap"])
def test_bootstrap_fixed_seed(case: dict) -> None:
    ci = stats.bootstrap(case["values"], resamples=case["resamples"], seed=case["seed"])
    assert (ci.mean, ci.low, ci.high) == pytest.approx((case["mean"], case["low"], case["high"]))


def test_mean_interval_picks_wilson_for_binary_and_bootstrap_otherwise() -> None:
    assert stats.mean_interval([1, 0, 1, float("nan")], binary=True).method == "wilson"
    assert stats.mean_interval([1, 0, 1, float("nan")], binary=True).n == 3
    assert stats.mean_interval([0.3, 0.5], binary=False).method == "bootstrap"


def test_items_needed_grows_as_the_difference_shrinks() -> None:
    big = stats.items_needed([1, 0, 1, 0, 1, 1, 0, 1])
    small = stats.items_needed([1, 0, 0, 0, -1, 0, 1, 0, 0, 1] * 3)
    assert big < small
    assert stats.items_needed([0, 0, 1, -1]) == math.inf
