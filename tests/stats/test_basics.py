"""Every statistic against known answers (tests/cases/stats.json says where each comes from)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.stats import basics as stats

CASES = json.loads((Path(__file__).resolve().parents[1] / "cases" / "stats.json").read_text())


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


@pytest.mark.parametrize("case", CASES["sign_flip"])
def test_sign_flip_exact(case: dict) -> None:
    from harness.stats.difference import sign_flip_p

    assert sign_flip_p(np.asarray(case["a"], dtype=float) - np.asarray(case["b"], dtype=float)) == pytest.approx(case["p_value"])


@pytest.mark.parametrize("case", CASES["holm"])
def test_holm(case: dict) -> None:
    assert stats.holm(case["p"]) == pytest.approx(case["adjusted"])


@pytest.mark.parametrize("case", CASES["kendall_tau"])
def test_kendall_tau(case: dict) -> None:
    assert stats.kendall_tau(case["x"], case["y"]) == pytest.approx(case["tau"], abs=1e-5)


@pytest.mark.parametrize("case", CASES["bootstrap"])
def test_bootstrap_fixed_seed(case: dict) -> None:
    ci = stats.bootstrap(case["values"], resamples=case["resamples"], seed=case["seed"])
    assert (ci.mean, ci.low, ci.high) == pytest.approx((case["mean"], case["low"], case["high"]))


def test_mean_interval_picks_wilson_for_binary_and_bootstrap_otherwise() -> None:
    assert stats.mean_interval([1, 0, 1, float("nan")], binary=True).method == "wilson"
    assert stats.mean_interval([1, 0, 1, float("nan")], binary=True).n == 3
    assert stats.mean_interval([0.3, 0.5], binary=False).method == "bootstrap"


def test_kendall_tau_rows_matches_scipy_row_by_row() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (200, 5)).astype(float), rng.integers(0, 4, (200, 5)).astype(float)
    fast = stats.kendall_tau_rows(x, y)
    for row, value in zip(range(200), fast):
        slow = stats.kendall_tau(x[row], y[row])
        assert (value != value and slow != slow) or value == pytest.approx(slow)
