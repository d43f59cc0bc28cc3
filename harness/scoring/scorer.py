"""From backend results to per-item scores; shared by live runs and ``rescore``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.requests import GenerateResult, LoglikelihoodResult, Result
from harness.scoring.filters import Filter, apply_filters
from harness.scoring.metrics import METRICS, Outcome
from harness.tasks import Item


def build_outcome(item: Item, continuations: Sequence[str], results: Sequence[Result], filters: list[Filter]) -> Outcome:
    """Multiple choice: one loglikelihood result per continuation; generate: one text."""
    if item.choices is not None:
        logprobs = tuple(r.logprob for r in results if isinstance(r, LoglikelihoodResult))
        return Outcome(item=item, choice_logprobs=logprobs, continuations=tuple(continuations))
    text = results[0].text if results and isinstance(results[0], GenerateResult) else ""
    return Outcome(item=item, text=text, extracted=apply_filters(filters, text))


def score_outcome(outcome: Outcome, metric_names: Sequence[str]) -> dict[str, float]:
    scores = {}
    for name in metric_names:
        value = float(METRICS.get(name).score(outcome))
        scores[name] = value if math.isfinite(value) else float("nan")
    return scores
