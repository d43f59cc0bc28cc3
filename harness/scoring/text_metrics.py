"""Text-overlap metrics through the reference libraries: sacrebleu (BLEU, chrF, TER) and
Google's rouge-score (ROUGE-1/2/L), never re-implemented here.

BLEU, chrF and TER are corpus metrics: the cell score is sacrebleu's corpus score over all
items (not a mean of sentence scores); each item also keeps its sentence-level score so
items stay paired across cells. Bootstrap CIs re-use sacrebleu's per-segment sufficient
statistics, exactly as sacrebleu's own paired bootstrap does. Scores are stored as fractions
(sacrebleu's value / 100) like every other metric, so reports showing x100 print the usual
BLEU / chrF / TER numbers.

Chinese: ``bleu_zh`` uses sacrebleu's ``tokenize="zh"`` (the WMT standard for Chinese
targets), ``ter_zh`` TER's ``asian_support``; chrF works on characters and needs nothing.
ROUGE's default tokenizer keeps only [a-z0-9], which deletes Chinese entirely, so the
``*_zh`` ROUGE variants tokenize CJK characters one per token (latin words stay words).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from harness.core.deps import require
from harness.scoring.metrics import GENERATION_KINDS, CorpusItem, Metric, Outcome, register_metric

_GEN = GENERATION_KINDS


def _prediction(outcome: Outcome) -> str:
    return outcome.extracted if outcome.extracted is not None else ""


def _references(outcome: Outcome) -> list[str]:
    return list(outcome.item.references)


def _streams(items: Sequence[CorpusItem]) -> tuple[list[str], list[list[str]]]:
    """Sacrebleu wants hypotheses plus reference *streams* (one stream per reference slot)."""
    hyps = [item.prediction or "" for item in items]
    width = max((len(item.references) for item in items), default=1)
    # items with fewer references repeat their first one: a duplicate reference changes no score
    streams = [[(item.references[i] if i < len(item.references) else item.references[0]) for item in items] for i in range(width)]
    return hyps, streams


# -- sacrebleu -------------------------------------------------------------------------
def _sacrebleu_metric(
    name: str, description: str, factory: Callable[[], Any], higher_is_better: bool = True, sentence_factory: Callable[[], Any] | None = None
) -> Metric:
    @lru_cache(maxsize=1)
    def instance() -> Any:
        return factory()

    @lru_cache(maxsize=1)
    def sentence_instance() -> Any:
        return (sentence_factory or factory)()

    def sentence(outcome: Outcome) -> float:
        return float(sentence_instance().sentence_score(_prediction(outcome), _references(outcome)).score) / 100

    def corpus(items: Sequence[CorpusItem]) -> float:
        hyps, streams = _streams(items)
        return float(instance().corpus_score(hyps, streams).score) / 100

    def stats(items: Sequence[CorpusItem]) -> np.ndarray:
        hyps, streams = _streams(items)
        return np.asarray(instance()._extract_corpus_statistics(hyps, streams), dtype=np.float64)

    def from_stats(summed: np.ndarray) -> float:
        values = summed.tolist()
        if "BLEU" in type(instance()).__name__:
            values = [int(round(v)) for v in values]
        return float(instance()._compute_score_from_stats(values).score) / 100

    return Metric(
        name, description, higher_is_better, "continuous", _GEN, sentence,
        aggregation="corpus", corpus=corpus, corpus_stats=stats, corpus_from_stats=from_stats,
        worst=0.0 if higher_is_better else None,  # sentence BLEU/chrF of a failure is 0; TER has no worst
    )


def _bleu(tokenize: str, effective_order: bool = False) -> Callable[[], Any]:
    """Corpus BLEU as sacrebleu's CLI computes it; sentence BLEU with effective order, as
    ``sacrebleu.sentence_bleu`` does (a short sentence without 4-gram matches is not 0)."""

    def make() -> Any:
        require("sacrebleu", "metrics", "sacrebleu", "this metric")
        from sacrebleu.metrics import BLEU  # type: ignore[attr-defined]

        return BLEU(tokenize=tokenize, effective_order=effective_order)

    return make


def _chrf(word_order: int) -> Callable[[], Any]:
    def make() -> Any:
        require("sacrebleu", "metrics", "sacrebleu", "this metric")
        from sacrebleu.metrics import CHRF  # type: ignore[attr-defined]

        return CHRF(word_order=word_order)

    return make


def _ter(asian: bool) -> Callable[[], Any]:
    def make() -> Any:
        require("sacrebleu", "metrics", "sacrebleu", "this metric")
        from sacrebleu.metrics import TER  # type: ignore[attr-defined]

        return TER(asian_support=asian)

    return make


register_metric(_sacrebleu_metric("bleu", "sacrebleu corpus BLEU, 13a tokenizer (items: sentence BLEU)", _bleu("13a"), sentence_factory=_bleu("13a", True)))
register_metric(
    _sacrebleu_metric("bleu_zh", "sacrebleu corpus BLEU, tokenize='zh' for Chinese targets", _bleu("zh"), sentence_factory=_bleu("zh", True))
)
register_metric(_sacrebleu_metric("chrf", "sacrebleu corpus chrF (character n-grams, any language)", _chrf(0)))
register_metric(_sacrebleu_metric("chrf_pp", "sacrebleu corpus chrF++ (chrF plus word bigrams)", _chrf(2)))
register_metric(_sacrebleu_metric("ter", "sacrebleu corpus TER (edit rate; lower is better)", _ter(False), higher_is_better=False))
register_metric(_sacrebleu_metric("ter_zh", "sacrebleu corpus TER with asian_support (Chinese)", _ter(True), higher_is_better=False))


# -- rouge-score -----------------------------------------------------------------------
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CJK_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}\\W]+|[0-9]+", re.UNICODE)


class CJKTokenizer:
    """rouge-score tokenizer for Chinese (and mixed) text: every CJK character is a token,
    other runs of letters/digits are lower-cased words; punctuation is dropped."""

    def tokenize(self, text: str) -> list[str]:
        return [token.lower() for token in _CJK_TOKEN.findall(text)]


def _rouge_metric(name: str, rouge_type: str, chinese: bool) -> Metric:
    @lru_cache(maxsize=1)
    def scorer() -> Any:
        require("rouge_score", "metrics", "rouge-score", "this metric")
        from rouge_score import rouge_scorer

        if chinese:
            return rouge_scorer.RougeScorer([rouge_type], tokenizer=CJKTokenizer())
        return rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)

    def score(outcome: Outcome) -> float:
        result = scorer().score_multi(_references(outcome), _prediction(outcome))
        return float(result[rouge_type].fmeasure)

    where = "CJK characters as tokens" if chinese else "Porter stemmer, as in the XSum/PEGASUS papers"
    return Metric(name, f"{rouge_type} F-measure via rouge-score ({where}); best over references", True, "continuous", _GEN, score, worst=0.0,
                  bounds=(0.0, 1.0))


for _type in ("rouge1", "rouge2", "rougeL"):
    register_metric(_rouge_metric(_type, _type, chinese=False))
    register_metric(_rouge_metric(f"{_type}_zh", _type, chinese=True))
