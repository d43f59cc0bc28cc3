"""From backend results to per-item scores; shared by live runs and ``rescore``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from harness.requests import GenerateResult, LoglikelihoodResult, Result
from harness.scoring.filters import Filter, apply_filters
from harness.scoring.metrics import NO_CHOICE, Outcome, get_metric, predicted_choice
from harness.tasks import Item


def build_outcome(item: Item, continuations: Sequence[str], results: Sequence[Result], filters: list[Filter]) -> Outcome:
    """Multiple choice: one loglikelihood result per continuation; generate: one text per
    sample (``repeats``); classification: one loglikelihood per verbalizer word."""
    if item.verbalizers is not None:
        return _classification_outcome(item, continuations, results)
    if item.choices is not None:
        logprobs = tuple(r.logprob for r in results if isinstance(r, LoglikelihoodResult))
        return Outcome(item=item, choice_logprobs=logprobs, continuations=tuple(continuations))
    texts = [r.text for r in results if isinstance(r, GenerateResult)] or [""]
    samples = tuple(apply_filters(filters, text) for text in texts)
    return Outcome(item=item, text=texts[0], extracted=samples[0], samples=samples if len(samples) > 1 else ())


def _classification_outcome(item: Item, continuations: Sequence[str], results: Sequence[Result]) -> Outcome:
    """A label's score is the logsumexp of its words' log-likelihoods (the probability of
    saying any of them); its continuation (for acc_norm) is its first word's."""
    assert item.verbalizers is not None and item.choices is not None
    logprobs = [r.logprob for r in results if isinstance(r, LoglikelihoodResult)]
    scores, firsts, at = [], [], 0
    for words in item.verbalizers:
        scores.append(float(np.logaddexp.reduce(logprobs[at : at + len(words)])))
        firsts.append(continuations[at])
        at += len(words)
    outcome = Outcome(item=item, choice_logprobs=tuple(scores), continuations=tuple(firsts))
    predicted = predicted_choice(outcome)  # ties go to the first label; NaN (unparsed) -> no label
    return dataclasses.replace(outcome, extracted=item.choices[predicted] if predicted != NO_CHOICE else None)


def score_outcome(outcome: Outcome, metric_names: Sequence[str]) -> dict[str, float]:
    scores = {}
    for name in metric_names:
        value = float(get_metric(name).score(outcome))
        scores[name] = value if math.isfinite(value) else float("nan")
    return scores
