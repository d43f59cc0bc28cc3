"""Per-item metrics. Each declares its direction and how item scores aggregate into a cell
score, so ranking and statistics never guess whether bigger is better.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
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
    # with ``repeats`` > 1: the extracted answer of every sample, in repeat order (sample 0 = ``extracted``)
    samples: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class CorpusItem:
    """What a corpus-level aggregation sees for one item, rebuilt from the stored row.

    ``prediction`` is the extracted answer (generated text after filters, or the predicted
    label for classification); ``references`` are the gold strings (the gold label for
    classification).
    """

    prediction: str | None
    references: tuple[str, ...]


CorpusFn = Callable[[Sequence[CorpusItem]], float]


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool
    kind: Literal["binary", "continuous"]  # binary: scores are 0/1 (Wilson CI, McNemar)
    task_types: tuple[str, ...]
    score: Callable[[Outcome], float]
    aggregation: Literal["mean", "corpus"] = "mean"
    # aggregation "corpus": the cell score is computed over all items at once (corpus BLEU,
    # macro-F1, MCC), not as the mean of ``score``; per-item ``score`` values are still kept
    # (sentence-level BLEU, per-item correctness) so items stay paired across cells.
    corpus: CorpusFn | None = None
    # optional fast path for bootstrap CIs of a corpus score: per-item sufficient statistics
    # (one row per item) whose column sums give the corpus score (sacrebleu's own scheme)
    corpus_stats: Callable[[Sequence[CorpusItem]], np.ndarray] | None = None
    corpus_from_stats: Callable[[np.ndarray], float] | None = None
    # a metric no response can be scored by on its own (``acc_calibrated`` needs content-free
    # scores): a later pass writes it into the stored items; names the command that does
    written_by: str | None = None
    # the score of a response that could not be scored ("wrong"); None: no natural worst (TER is
    # unbounded), so such items are excluded and counted. 0/1 metrics default to 0 (or 1 when
    # lower is better), see harness.summaries.worst_value.
    worst: float | None = None

    def __post_init__(self) -> None:
        if (self.aggregation == "corpus") != (self.corpus is not None):
            raise ValueError(f"metric '{self.name}': aggregation 'corpus' needs a corpus function, and only it")

    def aggregate(self, values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    def aggregate_corpus(self, items: Sequence[CorpusItem]) -> float:
        """The cell score over all items: the corpus function, else the mean of item scores."""
        if self.corpus is None:
            raise ValueError(f"metric '{self.name}' is a per-item mean; use aggregate() on its item scores")
        return float(self.corpus(items)) if items else float("nan")


METRICS: Registry[Metric] = Registry("metric")
# Parametrised metric names (``pass@5``, ``evaluate:./my_metric.py``): a pattern -> a factory
# that builds the Metric on first use and registers it under the full name.
METRIC_FAMILIES: dict[str, Callable[[re.Match[str]], Metric]] = {}


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.name, metric)


def register_family(pattern: str, factory: Callable[[re.Match[str]], Metric]) -> None:
    METRIC_FAMILIES[pattern] = factory


def get_metric(name: str, where: str = "") -> Metric:
    """A metric by name, building parametrised ones (``maj@8``, ``evaluate:...``) on demand."""
    if name not in METRICS:
        for pattern, factory in METRIC_FAMILIES.items():
            match = re.fullmatch(pattern, name)
            if match:
                return register_metric(factory(match))
    return METRICS.get(name, where)


NO_CHOICE = -1


def predicted_choice(outcome: Outcome, normalise: bool = False) -> int:
    """Index of the highest-scoring choice; ties go to the first (as argmax does).

    NaN scores mean the backend could not tell (a reply the generate-and-parse fallback could
    not map to an option): that predicts ``NO_CHOICE``, which no target equals, so the item
    counts as wrong instead of silently falling to the first option as argmax would.
    """
    scores = np.asarray(outcome.choice_logprobs, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).any():
        return NO_CHOICE
    if normalise:
        # lm-eval's acc_norm: log-likelihood divided by the choice's length in characters. The
        # leading delimiter (" Paris") is not part of lm-eval's choice text, so it is not counted.
        lengths = [max(len(c.lstrip()), 1) for c in outcome.continuations]
        scores = scores / np.array(lengths, dtype=np.float64)
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


register_metric(Metric("acc", "accuracy: the highest log-likelihood choice is the target", True, "binary", ("multiple_choice", "classification"), _acc))
register_metric(
    Metric("acc_norm", "accuracy with log-likelihood divided by continuation length (chars)", True, "binary", ("multiple_choice", "classification"), _acc_norm)
)


def _written_by_calibrate(outcome: Outcome) -> float:
    from harness.errors import HarnessError

    raise HarnessError("metric 'acc_calibrated' is written into a stored run by `harness calibrate RUN` "
                       "(it needs content-free scores); it cannot be listed in a task's metrics or computed by rescore")


register_metric(Metric("acc_calibrated", "accuracy after contextual calibration (Zhao et al. 2021); written by harness calibrate",
                       True, "binary", ("multiple_choice", "classification"), _written_by_calibrate, written_by="harness calibrate"))
register_metric(
    Metric("exact_match", "extracted answer equals a reference after normalisation", True, "binary", ("generate",), _exact_match)
)
