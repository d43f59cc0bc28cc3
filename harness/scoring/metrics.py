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

from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.tasks.kinds import kind_names
from harness.tasks.task import Item

# the task kinds a metric applies to (``Metric.task_types``), read off the kinds table so a new kind gets the metrics it fits
CHOICE_KINDS = kind_names(lambda k: k.has_choices and k.scoring == "loglikelihood")  # the answer is the highest-scoring choice
SEVERAL_CORRECT_KINDS = kind_names(lambda k: k.several_correct)  # mc1, mc2
CALIBRATABLE_KINDS = kind_names(lambda k: k.calibratable)
GENERATION_KINDS = kind_names(lambda k: k.scoring == "generation")
LABEL_KINDS = kind_names(lambda k: k.has_labels)
TEXT_ANSWER_KINDS = kind_names(lambda k: k.answer != "choice")  # the answer is text: generated, or the predicted label's name


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
    # multiple choice / classification, parallel to ``choice_logprobs``: each choice's continuation length in tokens
    # (acc_norm_tokens), and its log-probability after an empty context (acc_mutual_info; () unless the task lists it)
    choice_tokens: tuple[int, ...] = ()
    unconditional_logprobs: tuple[float, ...] = ()


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
    # lower is better), see harness.analysis.summaries.worst_value.
    worst: float | None = None
    # what must be present to score at all (data files such as WordNet), checked when a task is
    # planned so a run stops before it starts, not at its first item: raises HarnessError saying why
    requires: Callable[[], object] | None = None
    # the range every item score lies in, (lo, hi), for continuous metrics that have one (F1, ROUGE, MC2: (0, 1));
    # 0/1 metrics have (0, 1) without saying so (``score_bounds``). ``harness run --until-decided`` needs it
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.aggregation == "corpus") != (self.corpus is not None):
            raise ValueError(f"metric '{self.name}': aggregation 'corpus' needs a corpus function, and only it")

    def aggregate_corpus(self, items: Sequence[CorpusItem]) -> float:
        """The cell score over all items: the corpus function, else the mean of item scores."""
        if self.corpus is None:
            raise ValueError(f"metric '{self.name}' is a per-item mean; its cell score is the mean of its item scores")
        return float(self.corpus(items)) if items else float("nan")


def plugin_metric(value: object, name: str) -> Metric:
    """A ``harness.metrics`` entry point's object: a Metric named as its entry point (scores are stored by name)."""
    if not isinstance(value, Metric):
        raise TypeError(f"expected a harness.scoring.Metric, got {type(value).__name__}")
    if value.name != name:
        raise ValueError(f"its Metric is named '{value.name}', not '{name}'")
    return value


METRICS: Registry[Metric] = Registry("metric", "harness.metrics", plugin_metric)


def register_metric(metric: Metric) -> Metric:
    return METRICS.add(metric.name, metric)


def register_family(pattern: str, build: Callable[[re.Match[str]], Metric]) -> None:
    """Parametrised names (``pass@5``, ``evaluate:./my_metric.py``): each name ``pattern`` fully matches
    builds its Metric on first lookup; built members are cached by the registry, never added as names."""
    METRICS.add_family(pattern, build)


def score_bounds(metric: Metric) -> tuple[float, float] | None:
    """The range of the metric's item scores: its declared ``bounds``, (0, 1) for a 0/1 metric, else None (unbounded or unknown)."""
    if metric.bounds is not None:
        return metric.bounds
    return (0.0, 1.0) if metric.kind == "binary" else None


def get_metric(name: str, where: str = "") -> Metric:
    """A metric by name: a built-in, a plugin, or a family member (``maj@8``, ``evaluate:...``) built on first use."""
    return METRICS.get(name, where)


NO_CHOICE = -1


Normalisation = Literal["chars", "tokens", "bytes", "mutual_info"]


def choice_scores(outcome: Outcome, normalise: bool | Normalisation = False) -> np.ndarray:
    """Each choice's score: its log-likelihood, optionally normalised.

    ``chars`` (``True``): divided by the choice's length in characters (lm-eval's acc_norm). ``bytes``: by its
    length in UTF-8 bytes (lm-eval's acc_bytes). Both leave out the leading delimiter (" Paris" counts as
    "Paris"), as lm-eval measures ``len(choice)`` without its ``target_delimiter``; with per-choice contexts both
    measure the choice's context (``choice_texts``). ``tokens``: by the number of
    continuation tokens the backend scored. ``mutual_info``: minus the choice's log-likelihood after an empty
    context (lm-eval's acc_mutual_info: log P(choice | context) - log P(choice)).
    """
    scores = np.asarray(outcome.choice_logprobs, dtype=np.float64)
    mode = "chars" if normalise is True else normalise
    if not mode:
        return scores
    if mode == "mutual_info":
        unconditional = np.asarray(outcome.unconditional_logprobs, dtype=np.float64)
        if unconditional.size != scores.size:

            raise HarnessError(
                "acc_mutual_info needs each choice's log-likelihood after an empty context; those requests are made only when "
                "the task lists acc_mutual_info in its metrics (add it there and re-run; rescore cannot create them)"
            )
        return scores - unconditional
    if mode == "tokens":
        if len(outcome.choice_tokens) != scores.size:

            raise HarnessError("acc_norm_tokens needs each choice's token count (the backend's n_tokens), which this outcome lacks")
        lengths = [max(int(n), 1) for n in outcome.choice_tokens]
    elif mode == "bytes":
        lengths = [max(len(c.encode("utf-8")), 1) for c in choice_texts(outcome)]
    else:
        lengths = [max(len(c), 1) for c in choice_texts(outcome)]
    return scores / np.array(lengths, dtype=np.float64)


def choice_texts(outcome: Outcome) -> list[str]:
    """What the chars/bytes normalisations measure per choice (lm-eval's ``len(choice)``): the
    continuation without its leading delimiter (" Paris" counts as "Paris"), or, with per-choice
    contexts, the choice's context as the task's ``contexts:`` gives it (lm-eval's choices are
    then the contexts, ``doc_to_choice``; the shared continuation would divide every choice alike)."""
    if outcome.item is not None and outcome.item.contexts is not None:  # degenerate.py scores stored rows without an item
        return list(outcome.item.contexts)
    return [c.lstrip() for c in outcome.continuations]


def predicted_choice(outcome: Outcome, normalise: bool | Normalisation = False) -> int:
    """Index of the highest-scoring choice (see ``choice_scores``); ties go to the first (as argmax does).

    NaN scores mean the backend could not tell (a reply the generate-and-parse fallback could
    not map to an option): that predicts ``NO_CHOICE``, which no target equals, so the item
    counts as wrong instead of silently falling to the first option as argmax would.
    """
    scores = np.asarray(outcome.choice_logprobs, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).any():
        return NO_CHOICE
    scores = choice_scores(outcome, normalise)
    if np.isnan(scores).any():  # an unconditional score the backend could not give
        return NO_CHOICE
    return int(np.argmax(scores))


def is_correct(outcome: Outcome, choice: int) -> bool:
    """Whether ``choice`` is a correct one: the target, or any of an item's several correct choices (lm-eval's
    multiple-target ``pred in gold``)."""
    return choice != NO_CHOICE and choice in outcome.item.correct_choices


def _acc(outcome: Outcome) -> float:
    return float(is_correct(outcome, predicted_choice(outcome)))


def _acc_norm(outcome: Outcome) -> float:
    return float(is_correct(outcome, predicted_choice(outcome, normalise=True)))


def _acc_by(normalise: Normalisation) -> Callable[[Outcome], float]:
    def score(outcome: Outcome) -> float:
        return float(is_correct(outcome, predicted_choice(outcome, normalise)))

    return score


def _mc2(outcome: Outcome) -> float:
    """TruthfulQA's MC2 (lm-eval ``process_results_mc2``): p_i = exp(loglikelihood_i), normalised over the choices,
    summed over the correct ones. NaN when the scores give no distribution (a NaN, +inf, or every choice -inf)."""
    scores = np.asarray(outcome.choice_logprobs, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).any() or np.isposinf(scores).any() or not np.isfinite(scores).any():
        return float("nan")
    probs = np.exp(scores - np.logaddexp.reduce(scores))
    return float(sum(probs[i] for i in outcome.item.correct_choices))


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    text = _PUNCT.sub(" ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _exact_match(outcome: Outcome) -> float:
    if outcome.extracted is None:
        return 0.0
    got = normalise_answer(outcome.extracted)
    return float(any(got == normalise_answer(ref) for ref in outcome.item.references))


register_metric(Metric("acc", "accuracy: the highest log-likelihood choice is the target", True, "binary", CHOICE_KINDS, _acc))
register_metric(
    Metric("acc_norm", "accuracy with log-likelihood divided by continuation length (chars)", True, "binary", CHOICE_KINDS, _acc_norm)
)
register_metric(Metric("acc_norm_tokens", "accuracy with log-likelihood divided by the continuation's token count", True, "binary",
                       CHOICE_KINDS, _acc_by("tokens")))
register_metric(Metric("acc_norm_bytes", "accuracy with log-likelihood divided by the choice's UTF-8 length (lm-eval acc_bytes)", True,
                       "binary", CHOICE_KINDS, _acc_by("bytes")))
register_metric(Metric("acc_mutual_info", "accuracy of log P(choice | context) - log P(choice | empty context) (lm-eval)", True, "binary",
                       CHOICE_KINDS, _acc_by("mutual_info")))
register_metric(Metric("mc1", "TruthfulQA MC1: the highest log-likelihood choice is a correct one", True, "binary", SEVERAL_CORRECT_KINDS, _acc))
register_metric(Metric("mc2", "TruthfulQA MC2: normalised probability mass on the correct choices", True, "continuous", SEVERAL_CORRECT_KINDS,
                       _mc2, worst=0.0, bounds=(0.0, 1.0)))


def _written_by_calibrate(outcome: Outcome) -> float:
    raise HarnessError("metric 'acc_calibrated' is written into a stored run by `harness calibrate RUN` "
                       "(it needs content-free scores); it cannot be listed in a task's metrics or computed by rescore")


register_metric(Metric("acc_calibrated", "accuracy after contextual calibration (Zhao et al. 2021); written by harness calibrate",
                       True, "binary", CALIBRATABLE_KINDS, _written_by_calibrate, written_by="harness calibrate"))
register_metric(
    Metric("exact_match", "extracted answer equals a reference after normalisation", True, "binary", GENERATION_KINDS, _exact_match)
)
