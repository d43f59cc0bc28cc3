"""The task kinds (``type:`` in task.yaml) in one table, so that no other module branches on a kind's name.

Each ``TaskKind`` says what the stages need to know about its tasks: where an item's choices come
from and what ``target:`` gives (spec validation, item building), whether items fall into classes
(label distributions of subsets, per-class reports, degenerate cells), how items are scored
(log-likelihood of each continuation or generated text: the requests ``runner.planning.prepare``
builds and the outcome ``scoring.scorer.build_outcome`` makes of their results), which metrics
apply (``kind_names``), and whether ``harness calibrate`` and ``repeats`` make sense. The stages
above this layer act on those attributes (``kind.scoring == "loglikelihood"``), never on
``kind.name``; ``tests/tasks/test_kinds.py`` fails when a module outside this one compares a task
type with a literal.

Adding a kind: add its name to ``TaskType`` and its row to ``KINDS``, both here (the table's order
is the order error messages list kinds in). A row that only recombines existing attribute values
needs nothing else; a new attribute value (a new ``choices`` source or ``scoring``) also needs the
code acting on it in the stage that owns it (items: ``tasks.task``; requests: ``runner.plan``;
outcomes: ``scoring.scorer``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness.core.errors import HarnessError

# the ``type:`` values, in the order pydantic lists them when a task.yaml gives another one
TaskType = Literal["multiple_choice", "generate", "classification"]
ChoicesSource = Literal["expression", "verbalizers", "none"]
Scoring = Literal["loglikelihood", "generation"]
Gold = Literal["choices", "label", "references"]
Answer = Literal["choice", "label", "extracted answer"]


@dataclass(frozen=True)
class TaskKind:
    """What one task type is; see the module docstring for who reads which attribute."""

    name: str  # the ``type:`` value, also stored per cell (``task_type``)
    description: str
    # where an item's choices come from: the ``choices:`` expression, the ``verbalizers:`` labels
    # (the choices are the task's classes), or none (the answer is generated text)
    choices: ChoicesSource
    # "loglikelihood": one request per continuation (a choice, or each word of each label), the
    # highest-scoring choice is the answer; "generation": generated text, after the task's filters
    scoring: Scoring
    several_correct: bool  # ``target:`` may name several correct choices (a list, ``target_format: labels``): mc1/mc2
    per_choice_contexts: bool  # ``contexts:`` + ``continuation:`` (one prompt per choice, a shared continuation)
    calibratable: bool  # contextual calibration (``harness calibrate``) of the choice distribution

    @property
    def has_choices(self) -> bool:
        """Items have choices (and a gold one among them), so subsets have label distributions."""
        return self.choices != "none"

    @property
    def has_labels(self) -> bool:
        """The choices are the task's labels (classes): the gold label is the item's class."""
        return self.choices == "verbalizers"

    @property
    def repeats(self) -> bool:
        """Whether ``repeats`` > 1 can give different samples (log-likelihood scores do not vary)."""
        return self.scoring == "generation"

    @property
    def gold(self) -> Gold:
        """What ``target:`` gives and ``target_json`` stores: the index of one or more correct
        choices, the index of the gold label, or the reference strings."""
        return "label" if self.has_labels else "choices" if self.has_choices else "references"

    @property
    def answer(self) -> Answer:
        """What reports call an item's answer: the highest-scoring choice (not stored as text), the
        predicted label (stored as ``extracted``) or the extracted answer of the generated text."""
        return "label" if self.has_labels else "choice" if self.has_choices else "extracted answer"


KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        TaskKind("multiple_choice", "the highest log-likelihood choice is the answer", choices="expression",
                 scoring="loglikelihood", several_correct=True, per_choice_contexts=True, calibratable=True),
        TaskKind("generate", "generated text, after the task's filters, against reference answers", choices="none",
                 scoring="generation", several_correct=False, per_choice_contexts=False, calibratable=False),
        TaskKind("classification", "the label whose verbalizer words are most likely is the answer", choices="verbalizers",
                 scoring="loglikelihood", several_correct=False, per_choice_contexts=False, calibratable=True),
    )
}


def task_kind(name: str) -> TaskKind:
    """The kind of a ``type:`` value (a spec's, or a stored cell's ``task_type``)."""
    kind = KINDS.get(name)
    if kind is None:
        raise HarnessError(f"unknown task type {name!r}; known: {', '.join(KINDS)}")
    return kind


def kind_names(where: Callable[[TaskKind], bool]) -> tuple[str, ...]:
    """The names of the kinds ``where`` holds for, in table order (e.g. the kinds a metric applies to)."""
    return tuple(name for name, kind in KINDS.items() if where(kind))
