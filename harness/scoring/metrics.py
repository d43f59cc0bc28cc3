"""Per-item metrics. Each declares its direction and how item scores aggregate into a cell
score, so ranking and statistics never guess whether bigger is better.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.registry import Registry
from harness.tasks import Item


@dataclass(frozen=True)
class Outcome:
    """What a metric sees for one item: the model's raw answer and the extracted one."""

    item: Item
    choice_logprobs: tuple[float, ...] = ()
    continuations: tuple[str, ...] = ()
    text: str | None = None
    extracted: str | None = None


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool
    kind: Literal["binary", "continuous"]  # binary: scores are 0/1 (Wilson CI, McNemar)
    task_types: tuple[str, ...]
    score: Callable[[Outcome], float]
    aggregation: Literal["mean"] = "mean"

    def aggregate(self, values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.name, metric)


def predicted_choice(outcome: Outcome, normalise: bool = False) -> int:
    """Index of the highest-scoring choice; ties go to the first (as argmax does)."""
    scores = np.asarray(outcome.choice_logprobs, dtype=np.float64)
    if normalise:
        # lm-eval's acc_norm: log-likelihood divided by the continuation's length in characters.
        scores = scores / np.array([max(len(c), 1) for c in outcome.continuations], dtype=np.float64)
    return int(np.argmax(scores))


def _acc(outcome: Outcome) -> float:
    return float(predicted_choice(outcome) == outcome.item.target)


def _acc_norm(outcome: Outcome) -> float:
    return float(predicted_choice(outcome, normalise=True) == outcome.item.target)


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    text = _PUNCT.sub(" ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _exact_match(outcome: Outcome) -> float:
    if outcome.extracted is None:
        return 0.0
    references = outcome.item.target if isinstance(outcome.item.target, tuple) else ()
    got = normalise_answer(outcome.extracted)
    return float(any(got == normalise_answer(ref) for ref in references))


register_metric(Metric("acc", "accuracy: the highest log-likelihood choice is the target", True, "binary", ("multiple_choice",), _acc))
register_metric(
    Metric("acc_norm", "accuracy with log-likelihood divided by continuation length (chars)", True, "binary", ("multiple_choice",), _acc_norm)
)
register_metric(
    Metric("exact_match", "extracted answer equals a reference after normalisation", True, "binary", ("generate",), _exact_match)
)
