import json
from pathlib import Path

import pytest

from harness.scoring import METRICS, Outcome
from harness.tasks.task import Item

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


@pytest.mark.parametrize("metric", ["acc", "acc_norm"])
def test_unparsed_reply_counts_as_wrong_not_as_first_choice(metric: str) -> None:
    # the generate-and-parse fallback stores NaN for every option when the reply names none;
    # argmax would pick option 0, which here is the target
    nan = float("nan")
    item = Item(id="x", row={}, input="", target=0, choices=("cat", "dog"))
    outcome = Outcome(item=item, choice_logprobs=(nan, nan), continuations=(" cat", " dog"))
    assert METRICS.get(metric).score(outcome) == 0.0


def test_unparsed_classification_reply_has_no_predicted_label() -> None:
    from harness.requests import LoglikelihoodResult
    from harness.scoring.scorer import build_outcome

    nan = float("nan")
    item = Item(id="x", row={}, input="", target=0, choices=("negative", "positive"), verbalizers=(("bad",), ("good",)))
    results = [LoglikelihoodResult(logprob=nan, is_greedy=False, n_tokens=1)] * 2
    outcome = build_outcome(item, [" bad", " good"], results, [])
    assert outcome.extracted is None
    assert METRICS.get("acc").score(outcome) == 0.0
