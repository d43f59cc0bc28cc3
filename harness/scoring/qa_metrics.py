"""Extractive-QA metrics: exact match and token F1 exactly as the official scripts compute
them, best over the reference answers.

``squad_em`` / ``squad_f1``: the SQuAD v1.1 ``evaluate-v1.1.py`` normalisation (lower-case,
delete ASCII punctuation, drop English articles, collapse whitespace; F1 over whitespace
tokens). That tokenisation is meaningless for Chinese (a sentence is one token), so
``squad_em_zh`` / ``squad_f1_zh`` follow the MLQA script for ``lang="zh"``: Unicode
punctuation deleted, no articles, and "mixed segmentation" (every Chinese character is a
token, other runs are split on whitespace), which is how XQuAD/MLQA Chinese are scored.
Scores are in [0, 1] (the scripts print them x100).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable

from harness.scoring.metrics import GENERATION_KINDS, Metric, Outcome, register_metric

_ASCII_PUNCT = set(string.punctuation)
_HAN = re.compile(r"[\u4e00-\u9fa5]")


def _is_punct(char: str) -> bool:
    """ASCII or Unicode punctuation (category P*), asked per character: a table of every code point
    cost a second at import, which every ``harness`` command paid."""
    return char in _ASCII_PUNCT or unicodedata.category(char).startswith("P")


def normalize_squad(text: str) -> str:
    """``normalize_answer`` of the official SQuAD v1.1 evaluation script."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def mixed_segmentation(text: str) -> list[str]:
    """MLQA/CMRC segmentation: Chinese characters and punctuation are single tokens."""
    tokens: list[str] = []
    pending = ""
    for char in text:
        if _HAN.search(char) or _is_punct(char):
            tokens.extend(pending.split())
            pending = ""
            tokens.append(char)
        else:
            pending += char
    tokens.extend(pending.split())
    return tokens


def normalize_mlqa_zh(text: str) -> str:
    """``normalize_answer(s, lang='zh')`` of the MLQA evaluation script."""
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    return " ".join(t for t in mixed_segmentation(text) if t.strip())


def token_f1(prediction: str, reference: str, normalize: Callable[[str], str]) -> float:
    predicted = normalize(prediction).split()
    gold = normalize(reference).split()
    common = Counter(predicted) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact(prediction: str, reference: str, normalize: Callable[[str], str]) -> float:
    return float(normalize(prediction) == normalize(reference))


def best_over_references(fn: Callable[[str, str, Callable[[str], str]], float], normalize: Callable[[str], str]) -> Callable[[Outcome], float]:
    def score(outcome: Outcome) -> float:
        if outcome.extracted is None:
            return 0.0
        return max((fn(outcome.extracted, ref, normalize) for ref in outcome.item.references), default=0.0)

    return score


register_metric(Metric("squad_em", "SQuAD v1.1 exact match (official normalisation), best over references", True, "binary",
                       GENERATION_KINDS, best_over_references(exact, normalize_squad)))
register_metric(Metric("squad_f1", "SQuAD v1.1 token F1 (official normalisation), best over references", True, "continuous",
                       GENERATION_KINDS, best_over_references(token_f1, normalize_squad), worst=0.0, bounds=(0.0, 1.0)))
register_metric(Metric("squad_em_zh", "exact match with the MLQA script's Chinese normalisation", True, "binary",
                       GENERATION_KINDS, best_over_references(exact, normalize_mlqa_zh)))
register_metric(Metric("squad_f1_zh", "token F1 over MLQA mixed segmentation (Chinese characters as tokens)", True, "continuous",
                       GENERATION_KINDS, best_over_references(token_f1, normalize_mlqa_zh), worst=0.0, bounds=(0.0, 1.0)))
