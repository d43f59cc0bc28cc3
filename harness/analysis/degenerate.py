"""Degenerate cells: a model that gives the same answer to (nearly) every item.

A tuned model can collapse onto one answer ("A" for every lettered question, "yes" for every
BoolQ passage, one number for every GSM8K problem); its accuracy then measures the label
distribution, not the task, and an A/B against its base says little. From stored items:

- multiple choice: the predicted choice, re-derived from the stored per-choice log-likelihoods
  (the stored responses; the argmax as the cell's main metric takes it: length-normalised for
  ``acc_norm``), compared both by index (always the first option) and by the continuation's text
  (always " maybe" wherever it sits); the stronger of the two is reported;
- classification: the predicted label (``extracted``);
- generate: the extracted answer (``extracted`` after the task's filters, stripped; none extracted
  counts as the answer "(nothing extracted)").

A cell is degenerate when one answer covers at least ``DEGENERATE_SHARE`` (90%) of its items and
it has at least ``MIN_ITEMS`` (10) items (with fewer, a repeated answer is too likely by chance
to call).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from harness.scoring.metrics import NO_CHOICE, Outcome, predicted_choice
from harness.store import ItemAnswer, Store, StoredCell
from harness.tasks.kinds import task_kind

DEGENERATE_SHARE = 0.9
MIN_ITEMS = 10
NOTHING = "(nothing extracted)"


@dataclass(frozen=True)
class DegenerateCell:
    """One cell whose model gives ``answer`` on ``count`` of its ``n`` items."""

    run_id: str
    cell_id: str
    task: str
    prompt: str
    shots: int
    selector: str
    model: str
    n: int
    count: int
    share: float
    answer: str  # the repeated answer: the choice's text, the label or the extracted answer
    choice_index: int | None  # multiple choice by index: the repeated choice's index; else None
    by: str  # choice index | choice text | label | extracted answer

    @property
    def line(self) -> str:
        selector = "" if self.selector == "none" else f" {self.selector}"
        return (f"{self.task} | {self.prompt} | {self.shots}-shot{selector} | {self.model}: the same answer {self.answer!r} on "
                f"{self.count} of {self.n} items ({self.share:.0%}) by {self.by}: a degenerate cell, its score reflects how "
                "often that answer is right, not the task")


def dominant_answer(answers: Mapping[str, Hashable]) -> tuple[Hashable, int, int] | None:
    """(the most common answer, how many items gave it, items) over item id -> answer; None when empty.
    Ties go to the answer seen first."""
    if not answers:
        return None
    answer, count = Counter(answers.values()).most_common(1)[0]
    return answer, count, len(answers)


def is_degenerate(count: int, n: int, share: float = DEGENERATE_SHARE, min_items: int = MIN_ITEMS) -> bool:
    return n >= max(1, min_items) and count / n >= share


def degenerate_cells(store: Store, run_ids: Sequence[str], *, share: float = DEGENERATE_SHARE,
                     min_items: int = MIN_ITEMS) -> list[DegenerateCell]:
    """The degenerate cells of these runs, in the store's cell order."""
    rows: dict[tuple[str, str], list[ItemAnswer]] = {}
    for row in store.answers(run_ids):  # the answers alone: prompts, targets and scores are not decoded
        rows.setdefault((row.run_id, row.cell_id), []).append(row)
    out = []
    for cell in store.cells(run_ids):
        found = _cell(cell, rows.get((cell.run_id, cell.cell_id), []), share, min_items)
        if found is not None:
            out.append(found)
    return out


def _predicted(row: ItemAnswer, normalise: bool) -> tuple[int, str]:
    """(index, stripped text) of the choice a stored multiple-choice item predicts."""
    continuations = tuple(row.continuations or ())
    # [: n]: acc_mutual_info's unconditional results follow the choices' own (runner.prepare)
    logprobs = row.logprobs[: len(continuations)]
    if not normalise:  # predicted_choice's own rule without an array per item: NaN (or nothing) is no choice, else the first maximum
        index = NO_CHOICE if not logprobs or any(v != v for v in logprobs) else logprobs.index(max(logprobs))
    else:
        index = predicted_choice(Outcome(item=None, choice_logprobs=logprobs, continuations=continuations), normalise)  # type: ignore[arg-type]
    return index, (continuations[index].strip() if 0 <= index < len(continuations) else "(no choice)")


def _cell(cell: StoredCell, rows: list[ItemAnswer], share: float, min_items: int) -> DegenerateCell | None:
    kind = task_kind(cell.task_type)
    if kind.answer == "choice":  # not stored as text: the highest-scoring choice, read from the stored log-likelihoods
        normalise = bool(cell.metrics) and cell.metrics[0] == "acc_norm"
        predicted = {row.item_id: _predicted(row, normalise) for row in rows}
        candidates: list[tuple[str, Mapping[str, Hashable]]] = [
            ("choice index", {i: p[0] for i, p in predicted.items()}), ("choice text", {i: p[1] for i, p in predicted.items()}),
        ]
    else:
        answers = {row.item_id: (row.extracted or "").strip() or NOTHING for row in rows}
        candidates = [(kind.answer, answers)]  # the predicted label or the extracted answer, both stored as 'extracted'
    found = [(by, top) for by, answers in candidates if (top := dominant_answer(answers)) is not None]
    if not found:
        return None
    by, (answer, count, n) = max(found, key=lambda f: f[1][1])  # the stronger reading; ties: by index
    if not is_degenerate(count, n, share, min_items):
        return None
    index: int | None = None
    if by == "choice index":
        index = int(answer)  # type: ignore[call-overload]
        texts = {p[1] for p in predicted.values() if p[0] == index}
        answer = next(iter(texts)) if len(texts) == 1 else f"choice {index + 1} (index {index}, various texts)"
        if index == NO_CHOICE:
            answer, index = "(no choice)", None
    return DegenerateCell(cell.run_id, cell.cell_id, cell.task, cell.prompt, cell.shots, cell.selector, cell.model, n, count,
                          count / n, str(answer), index, by)
