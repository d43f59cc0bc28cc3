"""SQuAD EM/F1 against the official v1.1 evaluation script (reproduced verbatim below) and
the JSON cases; the Chinese variant against hand-computed MLQA-style values."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from harness.scoring import Outcome, get_metric
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "qa_metrics.json").read_text(encoding="utf-8"))


# --- from the official SQuAD v1.1 evaluate-v1.1.py (rajpurkar.github.io/SQuAD-explorer) ---
def official_normalize_answer(s):  # type: ignore[no-untyped-def]
    def remove_articles(text):  # type: ignore[no-untyped-def]
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):  # type: ignore[no-untyped-def]
        return " ".join(text.split())

    def remove_punc(text):  # type: ignore[no-untyped-def]
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):  # type: ignore[no-untyped-def]
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):  # type: ignore[no-untyped-def]
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_exact_match_score(prediction, ground_truth):  # type: ignore[no-untyped-def]
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_max_over_ground_truths(metric_fn, prediction, ground_truths):  # type: ignore[no-untyped-def]
    return max(metric_fn(prediction, gt) for gt in ground_truths)
# --- end of the official script ---


def outcome(prediction: str | None, references: list[str]) -> Outcome:
    return Outcome(item=Item(id="q", row={}, input="", target=tuple(references)), text=prediction or "", extracted=prediction)


@pytest.mark.parametrize("case", CASES["squad"])
def test_squad_em_f1_agree_with_the_official_script_and_known_values(case: dict) -> None:
    o = outcome(case["prediction"], case["references"])
    em, f1 = get_metric("squad_em").score(o), get_metric("squad_f1").score(o)
    assert em == float(official_max_over_ground_truths(official_exact_match_score, case["prediction"], case["references"]))
    assert f1 == pytest.approx(official_max_over_ground_truths(official_f1_score, case["prediction"], case["references"]))
    assert (em, f1) == (case["em"], pytest.approx(case["f1"], abs=1e-6))


@pytest.mark.parametrize("case", CASES["squad_zh"])
def test_chinese_em_f1_use_mixed_segmentation(case: dict) -> None:
    o = outcome(case["prediction"], case["references"])
    assert get_metric("squad_em_zh").score(o) == case["em"]
    assert get_metric("squad_f1_zh").score(o) == pytest.approx(case["f1"], abs=1e-6)


def test_whitespace_f1_cannot_score_partial_chinese_answers() -> None:
    # why the _zh variants exist: the official script sees a Chinese answer as one token
    o = outcome("黑豹队", ["黑豹"])
    assert get_metric("squad_f1").score(o) == 0.0 and get_metric("squad_f1_zh").score(o) == pytest.approx(0.8)


def test_unanswered_item_scores_zero() -> None:
    assert get_metric("squad_f1").score(outcome(None, ["308"])) == 0.0
