"""From backend results to per-item scores; shared by live runs and ``rescore``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from harness.requests import GenerateResult, LoglikelihoodResult, Result
from harness.scoring.filters import Filter, apply_filters
from harness.scoring.metrics import NO_CHOICE, Outcome, get_metric, predicted_choice
from harness.tasks.task import Item


def split_unconditional(continuations: Sequence[str], results: Sequence[Result]) -> tuple[list[LoglikelihoodResult], list[LoglikelihoodResult]]:
    """The conditional results (one per continuation) and, when the task lists acc_mutual_info, the
    unconditional ones that follow them (each continuation after an empty context, same order; see
    ``harness.runner.planning.prepare``); otherwise the second list is empty."""
    scored = [r for r in results if isinstance(r, LoglikelihoodResult)]
    n = len(continuations)
    if n and len(scored) == 2 * n:
        return scored[:n], scored[n:]
    return scored, []


def build_outcome(item: Item, continuations: Sequence[str], results: Sequence[Result], filters: list[Filter]) -> Outcome:
    """Multiple choice: one loglikelihood result per continuation (then, with acc_mutual_info, one
    per continuation after an empty context); generate: one text per sample (``repeats``);
    classification: one loglikelihood per verbalizer word (then the unconditional ones). Read off the item's
    fields, which its kind's choices source sets (harness.tasks.kinds), so rescore can score stored rows
    whose task is gone."""
    if item.verbalizers is not None:
        return _classification_outcome(item, continuations, results)
    if item.choices is not None:
        conditional, unconditional = split_unconditional(continuations, results)
        return Outcome(item=item, choice_logprobs=tuple(r.logprob for r in conditional), continuations=tuple(continuations),
                       choice_tokens=tuple(r.n_tokens for r in conditional), unconditional_logprobs=tuple(r.logprob for r in unconditional))
    texts = [r.text for r in results if isinstance(r, GenerateResult)] or [""]
    samples = tuple(apply_filters(filters, text) for text in texts)
    return Outcome(item=item, text=texts[0], extracted=samples[0], samples=samples if len(samples) > 1 else ())


def _classification_outcome(item: Item, continuations: Sequence[str], results: Sequence[Result]) -> Outcome:
    """A label's score is the logsumexp of its words' log-likelihoods (the probability of
    saying any of them); its continuation (for acc_norm, acc_norm_bytes) and its token count
    (acc_norm_tokens) are its first word's; its unconditional score (acc_mutual_info) is the
    logsumexp of its words' unconditional log-likelihoods."""
    assert item.verbalizers is not None and item.choices is not None
    conditional, unconditional = split_unconditional(continuations, results)
    logprobs = [r.logprob for r in conditional]
    free = [r.logprob for r in unconditional]
    scores, firsts, tokens, neutral, at = [], [], [], [], 0
    for words in item.verbalizers:
        scores.append(float(np.logaddexp.reduce(logprobs[at : at + len(words)])))
        firsts.append(continuations[at])
        tokens.append(conditional[at].n_tokens if at < len(conditional) else 0)
        if free:
            neutral.append(float(np.logaddexp.reduce(free[at : at + len(words)])))
        at += len(words)
    outcome = Outcome(item=item, choice_logprobs=tuple(scores), continuations=tuple(firsts), choice_tokens=tuple(tokens),
                      unconditional_logprobs=tuple(neutral))
    predicted = predicted_choice(outcome)  # ties go to the first label; NaN (unparsed) -> no label
    return dataclasses.replace(outcome, extracted=item.choices[predicted] if predicted != NO_CHOICE else None)


def score_outcome(outcome: Outcome, metric_names: Sequence[str]) -> dict[str, float]:
    scores = {}
    for name in metric_names:
        value = float(get_metric(name).score(outcome))
        scores[name] = value if math.isfinite(value) else float("nan")
    return scores
