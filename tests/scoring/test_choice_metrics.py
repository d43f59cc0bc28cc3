"""Multiple-choice metrics on the hand-computed cases of tests/cases/choice_metrics.json: several correct
choices (acc, acc_norm, mc1, mc2) and the normalisations acc_norm_tokens, acc_norm_bytes, acc_mutual_info."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.analysis.summaries import worst_value
from harness.core.errors import HarnessError
from harness.scoring import METRICS, Outcome, get_metric
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "choice_metrics.json").read_text(encoding="utf-8"))["cases"]


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def outcome_of(case: dict) -> Outcome:
    target = tuple(case["target"]) if isinstance(case["target"], list) else case["target"]
    item = Item(id="x", row={}, input="", target=target, choices=tuple(c.strip() for c in case["continuations"]))
    return Outcome(
        item=item, choice_logprobs=tuple(_number(v) for v in case["logprobs"]), continuations=tuple(case["continuations"]),
        choice_tokens=tuple(case.get("tokens", ())), unconditional_logprobs=tuple(_number(v) for v in case.get("unconditional", ())),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_choice_metric_cases(case: dict) -> None:
    got = get_metric(case["metric"]).score(outcome_of(case))
    if case["expected"] is None:
        assert math.isnan(got)
    elif case.get("approx"):
        assert got == pytest.approx(case["expected"], abs=1e-12)
    else:
        assert got == case["expected"]


def test_every_new_metric_has_cases() -> None:
    covered = {c["metric"] for c in CASES}
    assert {"mc1", "mc2", "acc_norm_tokens", "acc_norm_bytes", "acc_mutual_info"} <= covered


def test_declarations() -> None:
    mc2 = METRICS.get("mc2")
    assert mc2.kind == "continuous" and mc2.higher_is_better and worst_value(mc2) == 0.0 and mc2.aggregation == "mean"
    for name in ("mc1", "acc_norm_tokens", "acc_norm_bytes", "acc_mutual_info"):
        metric = METRICS.get(name)
        assert metric.kind == "binary" and metric.higher_is_better and worst_value(metric) == 0.0
    assert METRICS.get("mc1").task_types == ("multiple_choice",) == METRICS.get("mc2").task_types
    for name in ("acc_norm_tokens", "acc_norm_bytes", "acc_mutual_info"):
        assert "classification" in METRICS.get(name).task_types


def test_mutual_info_without_unconditional_scores_is_an_error_not_a_guess() -> None:
    case = {"continuations": [" a", " b"], "logprobs": [-1.0, -2.0], "target": 0}
    with pytest.raises(HarnessError, match="empty context.*lists acc_mutual_info"):
        get_metric("acc_mutual_info").score(outcome_of(case))


def test_tokens_normalisation_without_token_counts_is_an_error() -> None:
    case = {"continuations": [" a", " b"], "logprobs": [-1.0, -2.0], "target": 0}
    with pytest.raises(HarnessError, match="token count"):
        get_metric("acc_norm_tokens").score(outcome_of(case))
