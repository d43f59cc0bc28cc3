"""Metrics over several samples of one item (``repeats: n`` with a temperature > 0).

``maj@k``: majority vote over the extracted answers of the first k samples (ties go to the
answer seen first; unanswered samples do not vote), scored by exact match.
``pass@k``: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), with n
samples of which c are correct (exact match), so k may be smaller than n.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from harness.scoring.metrics import GENERATION_KINDS, Metric, Outcome, normalise_answer, register_family


def _correct(answer: str | None, outcome: Outcome) -> bool:
    if answer is None:
        return False
    got = normalise_answer(answer)
    return any(got == normalise_answer(ref) for ref in outcome.item.references)


def _samples(outcome: Outcome) -> tuple[str | None, ...]:
    return outcome.samples or (outcome.extracted,)


def majority(answers: tuple[str | None, ...]) -> str | None:
    votes = Counter(normalise_answer(a) for a in answers if a is not None)
    if not votes:
        return None
    winner = votes.most_common(1)[0][0]
    return next(a for a in answers if a is not None and normalise_answer(a) == winner)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _maj(match: re.Match[str]) -> Metric:
    k = int(match.group(1))

    def score(outcome: Outcome) -> float:
        samples = _samples(outcome)
        if len(samples) < k:
            return float("nan")
        return float(_correct(majority(samples[:k]), outcome))

    return Metric(match.group(0), f"exact match of the majority answer of {k} samples", True, "binary", GENERATION_KINDS, score)


def _pass(match: re.Match[str]) -> Metric:
    k = int(match.group(1))

    def score(outcome: Outcome) -> float:
        samples = _samples(outcome)
        if len(samples) < k:
            return float("nan")
        return pass_at_k(len(samples), sum(_correct(s, outcome) for s in samples), k)

    return Metric(match.group(0), f"unbiased pass@{k} over the item's samples (exact match)", True, "continuous", GENERATION_KINDS, score,
                  worst=0.0, bounds=(0.0, 1.0))


def samples_needed(name: str) -> int:
    """K for ``maj@k`` / ``pass@k`` names, else 1 (used to check ``repeats`` >= k)."""
    match = re.fullmatch(r"(?:maj|pass)@([1-9][0-9]*)", name)
    return int(match.group(1)) if match else 1


register_family(r"maj@([1-9][0-9]*)", _maj)
register_family(r"pass@([1-9][0-9]*)", _pass)
