"""sacrebleu BLEU/chrF/TER and rouge-score ROUGE through the harness metrics, on known values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from harness.scoring import CorpusItem, Outcome, get_metric
from harness.scoring.text_metrics import CJKTokenizer
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "text_metrics.json").read_text(encoding="utf-8"))


def outcome(prediction: str, references: list[str]) -> Outcome:
    item = Item(id="x", row={}, input="", target=tuple(references))
    return Outcome(item=item, text=prediction, extracted=prediction)


@pytest.mark.parametrize("case", CASES["sacrebleu"])
def test_sacrebleu_corpus_scores_match_the_known_values(case: dict) -> None:
    items = [CorpusItem(h, tuple(refs)) for h, refs in zip(case["hypotheses"], case["references"])]
    for name, expected in case["expected"].items():
        metric = get_metric(name)
        assert metric.aggregation == "corpus"
        assert 100 * metric.aggregate_corpus(items) == pytest.approx(expected, abs=0.005), name
        # the sufficient-statistics path used by bootstrap CIs gives the same corpus score
        assert metric.corpus_from_stats(metric.corpus_stats(items).sum(axis=0)) == pytest.approx(metric.aggregate_corpus(items))


def test_ter_is_lower_is_better_and_bleu_higher() -> None:
    assert get_metric("ter").higher_is_better is False
    assert get_metric("bleu").higher_is_better is True


def test_sentence_bleu_per_item_matches_sacrebleu_sentence_bleu() -> None:
    hyp, ref = "The man had just bitten him.", "The man bit him first."
    expected = sacrebleu.sentence_bleu(hyp, [ref]).score / 100
    assert get_metric("bleu").score(outcome(hyp, [ref])) == pytest.approx(expected)


def test_chinese_bleu_uses_the_zh_tokenizer() -> None:
    hyps = ["很抱歉，您的订单晚到了。", "我们已经为您指派了骑手。"]
    refs = ["很抱歉，您点的餐可能会晚到一会。", "我们已经为您的订单指派了一名骑手。"]
    items = [CorpusItem(h, (r,)) for h, r in zip(hyps, refs)]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score / 100
    assert get_metric("bleu_zh").aggregate_corpus(items) == pytest.approx(expected)
    # 13a leaves an unsegmented Chinese sentence as one or two 'words': BLEU collapses
    assert get_metric("bleu").aggregate_corpus(items) < 0.5 * expected
    assert get_metric("chrf").aggregate_corpus(items) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score / 100)


def test_missing_prediction_scores_as_empty_text() -> None:
    item = Item(id="x", row={}, input="", target=("a reference",))
    assert get_metric("bleu").score(Outcome(item=item, text="", extracted=None)) == 0.0


@pytest.mark.parametrize("case", CASES["rouge"])
def test_rouge_matches_hand_counted_values(case: dict) -> None:
    for name, expected in case["expected"].items():
        assert get_metric(name).score(outcome(case["prediction"], case["references"])) == pytest.approx(expected, abs=1e-5), name


def test_cjk_tokenizer_splits_characters_keeps_latin_words() -> None:
    assert CJKTokenizer().tokenize("很抱歉，Hello World 2022年") == ["很", "抱", "歉", "hello", "world", "2022", "年"]


def test_bootstrap_interval_of_a_corpus_metric_brackets_the_point() -> None:
    from harness.analysis.aggregates import corpus_interval

    rng = np.random.default_rng(0)
    words = "the a cat dog sat ran on under mat rug".split()
    items = [CorpusItem(" ".join(rng.choice(words, 6)), (" ".join(rng.choice(words, 6)),)) for _ in range(40)]
    interval = corpus_interval(get_metric("chrf"), items, resamples=300)
    assert interval.low <= interval.mean <= interval.high and interval.low < interval.high
    assert interval.n == 40
