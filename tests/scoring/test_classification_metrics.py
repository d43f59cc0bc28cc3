"""scikit-learn macro P/R/F1 and MCC as corpus metrics, and the per-class report, on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.requests import LoglikelihoodResult
from harness.scoring import CorpusItem, Outcome, get_metric
from harness.scoring.classification_metrics import per_class_report
from harness.scoring.scorer import build_outcome
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "classification_metrics.json").read_text(encoding="utf-8"))["cases"]


def items(case: dict) -> list[CorpusItem]:
    return [CorpusItem(p, (g,)) for p, g in zip(case["predictions"], case["golds"])]


@pytest.mark.parametrize("case", CASES)
def test_corpus_classification_metrics(case: dict) -> None:
    for name, expected in case["expected"].items():
        metric = get_metric(name)
        assert metric.aggregation == "corpus" and metric.higher_is_better
        assert metric.aggregate_corpus(items(case)) == pytest.approx(expected, abs=1e-6), name


@pytest.mark.parametrize("case", CASES)
def test_per_class_report(case: dict) -> None:
    report = per_class_report(items(case))
    assert sorted(report) == sorted(case["per_class"])
    for label, (precision, recall, f1, support) in case["per_class"].items():
        got = report[label]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision, recall, f1), abs=1e-6)
        assert got["support"] == support


def test_verbalizer_outcome_takes_logsumexp_over_a_labels_words() -> None:
    # label 0 has two words at -2 each (logsumexp -1.307), label 1 one word at -1.5: label 0 wins
    item = Item(id="x", row={}, input="", target=0, choices=("neg", "pos"), verbalizers=(("bad", "awful"), ("good",)))
    results = [LoglikelihoodResult(-2.0, False, 1), LoglikelihoodResult(-2.0, False, 1), LoglikelihoodResult(-1.5, False, 1)]
    outcome = build_outcome(item, [" bad", " awful", " good"], results, [])
    assert outcome.extracted == "neg"
    assert outcome.choice_logprobs[0] == pytest.approx(-2.0 + 0.693147, abs=1e-5)
    assert outcome.continuations == (" bad", " good")
    assert get_metric("acc").score(outcome) == 1.0
    assert get_metric("f1_macro").score(outcome) == 1.0  # the per-item value is correctness (pairing)


def test_missing_prediction_counts_as_wrong() -> None:
    assert get_metric("f1_macro").aggregate_corpus([CorpusItem(None, ("a",)), CorpusItem("b", ("b",))]) == pytest.approx(0.5)
    assert isinstance(Outcome, type)
