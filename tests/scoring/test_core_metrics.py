import json
from pathlib import Path

import pytest

from harness.scoring import METRICS, Outcome
from harness.tasks import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "core_metrics.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_core_metric_cases(case: dict) -> None:
    if "continuations" in case:
        item = Item(id="x", row={}, input="", target=case["target"], choices=tuple(c.strip() for c in case["continuations"]))
        outcome = Outcome(item=item, choice_logprobs=tuple(case["logprobs"]), continuations=tuple(case["continuations"]))
    else:
        item = Item(id="x", row={}, input="", target=tuple(case["references"]))
        outcome = Outcome(item=item, text=case["extracted"] or "", extracted=case["extracted"])
    assert METRICS.get(case["metric"]).score(outcome) == case["expected"]


def test_metrics_declare_direction_and_kind() -> None:
    for name in ("acc", "acc_norm", "exact_match"):
        metric = METRICS.get(name)
        assert metric.higher_is_better and metric.kind == "binary"
