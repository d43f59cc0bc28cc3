"""maj@k and pass@k over several samples per item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.scoring import Outcome, get_metric
from harness.scoring.sampling_metrics import pass_at_k
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "sampling_metrics.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES["pass_at_k"])
def test_unbiased_pass_at_k(case: dict) -> None:
    assert pass_at_k(case["n"], case["c"], case["k"]) == pytest.approx(case["expected"], abs=1e-6)


@pytest.mark.parametrize("case", CASES["majority"])
def test_majority_and_pass_metrics(case: dict) -> None:
    samples = tuple(case["samples"])
    outcome = Outcome(item=Item(id="x", row={}, input="", target=(case["target"],)), text="", extracted=samples[0], samples=samples)
    assert get_metric(f"maj@{case['k']}").score(outcome) == case["maj"]
    assert get_metric(f"pass@{case['pass_k']}").score(outcome) == pytest.approx(case["pass"], abs=1e-6)


def test_family_names_are_built_on_demand_and_reject_nonsense() -> None:
    assert get_metric("maj@16").name == "maj@16"
    with pytest.raises(HarnessError, match="unknown metric 'maj@0'"):
        get_metric("maj@0")
