"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use") of a finished run.

A model's choice probabilities carry a bias from the prompt itself: the demonstrations'
labels, their order, a label word that is simply more frequent. Zhao et al. estimate that
bias by asking the same prompt (same template, same demonstrations) about *content-free*
inputs ("N/A", "", "[MASK]"), average the resulting choice probabilities into ``p_cf``
and predict ``argmax_i p_i / p_cf_i`` (the diagonal ``W = diag(p_cf)^-1`` of the paper).

This is a second pass over a stored run, not part of the runner: for every multiple-choice
or classification item it renders the content-free variants with the item's *stored*
demonstrations, scores them through the response cache (the model is loaded only on a
miss), and stores per item ``p_cf`` and the calibrated prediction in the ``calibration``
table of the same SQLite file (migration ``004_calibration``), and the item score ``acc_calibrated`` into the run's items
(so ``harness compare --metric acc_calibrated`` and ``harness sensitivity`` rank and
pair-test it like any metric). Uncalibrated accuracy is recomputed from the stored
responses, so both sit side by side with Wilson CIs and a McNemar test on the same items.
Re-running is idempotent (rows and scores are replaced) and cheap (content-free scores are
cached chunk by chunk, so an interrupted pass resumes from the cache).

The content-free variant of an item replaces ``input`` and the row fields that the task's
``input:`` expression reads (found with ``jinja2.meta``), nothing else: a field the input
does not read keeps its value even when that value happens to occur in the input. A string
(or number) field read by the expression is replaced whole; inside a list or dict field
only the strings at the constant paths the expression reads are (ARC's
``question.stem``: the stem, not ``question.choices``); a list or dict read whole
(``parts | join(' ')``) is left as it is, so a template should show it through
``{{ input }}``.

Items with several correct choices (``target_format: labels``, or a list ``target:``) are refused with
an error naming the task and item: the calibration table pairs one predicted with one gold choice.

Tasks with per-choice contexts (``contexts:`` + ``continuation:``, Winograd style) are refused too,
before anything is scored (:func:`per_choice_refusal` says why): the method replaces the input by
content-free text while each choice keeps its scored text, but there the scored text is one shared
continuation and what tells the choices apart lives inside their contexts, which the task builds
from the same fields as the input (a content-free "N/A" has no blank to fill with an option).
No content-free prompt keeps the choices apart without keeping the content.

*Unscorable* items: a choice distribution needs log-probabilities that are not NaN, not
+inf and not all -inf (-inf alone is probability 0, e.g. the chat fallback's unchosen
options). An item whose own choice scores fail that (an unparsed API reply: NaN), or
whose content-free scores all fail it, predicts ``NO_CHOICE``: wrong for
``acc_calibrated``, and counted per cell (``CellCalibration.unscorable``). A content-free
input whose scores fail it for one item is dropped from that item's ``p_cf`` (the others
still estimate the bias), and the item is counted in ``content_free_dropped``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2.meta
import numpy as np
from jinja2 import nodes

from harness.backends import Backend, backend_class
from harness.core.errors import HarnessError, shorten
from harness.core.templating import environment
from harness.requests import LoglikelihoodRequest, loglikelihood_requests
from harness.runner.evaluate import CacheCounts, resolve
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.scoring.metrics import NO_CHOICE, predicted_choice
from harness.scoring.scorer import build_outcome
from harness.stats.basics import Interval, mcnemar, wilson
from harness.store import CalibrationRow, Store, StoredItem, export_run
from harness.tasks.task import Item

CONTENT_FREE = ("N/A", "", "[MASK]")
CALIBRATED_METRIC = "acc_calibrated"  # the item score calibrate adds, so compare/report/sensitivity can pair it


# -- the arithmetic ---------------------------------------------------------------------
def scorable(choice_logprobs: Sequence[float]) -> bool:
    """Whether the scores give a choice distribution: none NaN or +inf, not all -inf (or empty)."""
    values = np.asarray(choice_logprobs, dtype=np.float64)
    return bool(values.size and not np.isnan(values).any() and not np.isposinf(values).any() and np.isfinite(values).any())


def _log_softmax(logprobs: Sequence[float]) -> np.ndarray:
    values = np.asarray(logprobs, dtype=np.float64)
    return values - np.logaddexp.reduce(values)


def softmax(logprobs: Sequence[float]) -> np.ndarray:
    return np.exp(_log_softmax(logprobs))


def content_free_probs(choice_logprobs: Sequence[Sequence[float]]) -> np.ndarray:
    """p_cf: the content-free inputs' choice distributions (each normalised), averaged.

    Inputs whose scores are not :func:`scorable` are left out; none left is an error.
    """
    usable = [lp for lp in choice_logprobs if scorable(lp)]
    if not usable:
        raise ValueError("no scorable content-free scores" if choice_logprobs else "no content-free scores")
    return np.mean([softmax(lp) for lp in usable], axis=0)


def calibrated_choice(choice_logprobs: Sequence[float], p_cf: np.ndarray | None) -> int:
    """Argmax of W p with W = diag(p_cf)^-1 (b = 0), i.e. of log p_i - log p_cf_i; ties: first.

    ``NO_CHOICE`` when the item's own scores are not :func:`scorable` or there is no usable
    ``p_cf`` (None, or not finite): argmax would silently answer choice 0.
    """
    if not scorable(choice_logprobs) or p_cf is None or not np.isfinite(np.asarray(p_cf, dtype=np.float64)).all():
        return NO_CHOICE
    scores = _log_softmax(choice_logprobs) - np.log(np.maximum(np.asarray(p_cf, dtype=np.float64), 1e-300))
    return int(np.argmax(scores))


# -- the content-free item --------------------------------------------------------------
ReadPath = tuple[Any, ...]  # (field, key, key, ...): a row field and the constant keys read inside it


@lru_cache(maxsize=256)
def input_reads(expression: str) -> tuple[ReadPath, ...]:
    """The row fields a task's ``input:`` expression reads, with the constant paths into them.

    ``{{ question.stem }}`` -> ``(('question', 'stem'),)``; ``Title ~ '. ' ~ Description`` ->
    ``(('Title',), ('Description',))``; a field read whole, or through a computed key, is a
    path of its field alone. Template globals (``letters``...) are not fields.
    """
    source = expression.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2].strip()
    try:
        tree = environment().parse("{{ " + source + " }}")
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"input expression {shorten(expression)}: {exc.message}") from None
    except RecursionError:  # task loading refuses such an expression first; kept for a caller that did not
        raise HarnessError(f"input expression {shorten(expression)}: nested too deeply to parse") from None
    fields = jinja2.meta.find_undeclared_variables(tree)
    return tuple(dict.fromkeys(p for p in _read_paths(tree) if p[0] in fields))


def _read_paths(node: nodes.Node) -> Iterator[ReadPath]:
    keys: list[Any] = []
    base = node
    while isinstance(base, (nodes.Getattr, nodes.Getitem)):
        if isinstance(base, nodes.Getattr):
            keys.append(base.attr)
        elif isinstance(base.arg, nodes.Const):
            keys.append(base.arg.value)
        else:
            break
        base = base.node
    if keys and isinstance(base, nodes.Name):
        yield (base.name, *reversed(keys))
    elif isinstance(node, nodes.Name):
        yield (node.name,)
    else:
        for child in node.iter_child_nodes():
            yield from _read_paths(child)


def _replace_at(value: Any, keys: tuple[Any, ...], text: str) -> Any:
    """``value`` with what ``keys`` reach replaced by ``text`` (copies, never mutates the row)."""
    if not isinstance(value, (dict, list)):
        return text  # a string (or number) the input reads: its content, whatever part is read
    if not keys:
        return value  # a structure read whole: left as it is (documented)
    key, rest = keys[0], keys[1:]
    if isinstance(value, dict) and key in value:
        return {**value, key: _replace_at(value[key], rest, text)}
    if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool) and -len(value) <= key < len(value):
        copy = list(value)
        copy[key] = _replace_at(value[key], rest, text)
        return copy
    return value


def content_free_item(item: Item, text: str, input_expression: str) -> Item:
    """The item with its input replaced by a content-free ``text``.

    Templates read row fields (``{{ sentence }}``), not only ``input``, so the fields that
    the task's ``input_expression`` reads are replaced too (see :func:`input_reads` and the
    module docstring for structures); every other field, the choices and the target stay,
    so the rendered prompt differs only where the input was. An item with per-choice contexts
    is refused (:func:`per_choice_refusal`).
    """
    if item.contexts is not None:
        raise HarnessError(per_choice_refusal(f"item {item.id!r}"))
    row = dict(item.row)
    for path in input_reads(input_expression):
        if path[0] in row:
            row[path[0]] = _replace_at(row[path[0]], path[1:], text)
    return dataclasses.replace(item, row=row, input=text)


def per_choice_refusal(subject: str) -> str:
    """Why a task with per-choice contexts cannot be calibrated (see the module docstring); ``subject``: "task 'x'"."""
    return (
        f"{subject} gives each choice its own context ('contexts:'), and contextual calibration cannot be applied to "
        "it: the method replaces the input by content-free text while the choices keep their scored text, but here the "
        "scored text is one shared continuation and the choices differ only inside their contexts, which are built from "
        "the input's own fields, so no content-free prompt keeps the choices apart; calibrate a run without such tasks"
    )


# -- the pass over a stored run ---------------------------------------------------------
@dataclass(frozen=True)
class CellCalibration:
    cell_id: str
    label: str
    n: int
    acc: Interval
    acc_calibrated: Interval
    p_value: float  # McNemar, calibrated vs uncalibrated on the same items
    p_cf_mean: tuple[float, ...]  # the average content-free distribution (the estimated bias); () if none was usable
    # items that predict no calibrated choice (in ``n``, counted wrong): their own choice scores,
    # or all their content-free scores, were NaN/+inf/all -inf; of those, the content-free ones
    unscorable: int = 0
    unscorable_content_free: int = 0
    content_free_dropped: int = 0  # calibrated items whose p_cf left out a content-free input that was not scorable

    def to_json(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id, "cell": self.label, "n": self.n,
            "acc": self.acc.mean, "acc_low": self.acc.low, "acc_high": self.acc.high,
            "acc_calibrated": self.acc_calibrated.mean, "acc_calibrated_low": self.acc_calibrated.low,
            "acc_calibrated_high": self.acc_calibrated.high, "mcnemar_p": self.p_value, "p_cf_mean": list(self.p_cf_mean),
            "unscorable": self.unscorable, "unscorable_content_free": self.unscorable_content_free,
            "content_free_dropped": self.content_free_dropped,
        }


@dataclass(frozen=True)
class _Pending:
    """One content-free rendering waiting for its scores (``requests`` is what ``resolve`` reads)."""

    item_id: str
    neutral: Item
    continuations: tuple[str, ...]
    requests: tuple[LoglikelihoodRequest, ...]


def calibrate_run(
    store: Store, run_id: str, *, backends: Mapping[str, Backend] | None = None, content_free: Sequence[str] = CONTENT_FREE,
    chunk_items: int = 32,
) -> int:
    """Score the content-free prompts of every calibratable item of ``run_id``; returns items written.

    Rebuilds the run's cells from its stored configuration (so tasks, templates and data must
    still be there), renders each item's content-free variants with its stored demonstrations,
    and resolves them through the response cache (new scores are cached, so a second pass is
    free and the model is never loaded when everything is cached).
    """
    if not content_free:
        raise HarnessError("calibration needs at least one content-free input")
    spec = ExperimentSpec.model_validate(store.run_config(run_id)["spec"])
    stored_cells = {c.cell_id for c in store.cells([run_id])}
    cells = [c for c in plan(spec) if c.cell_id in stored_cells and c.task.kind.calibratable]
    if not cells:
        raise HarnessError(f"run {run_id} has no multiple-choice or classification cells to calibrate")
    for cell in cells:  # before anything is scored: the table and McNemar pair one predicted with one gold choice
        several = next((item for item in cell.items if item.correct is not None), None)
        if several is not None:
            raise HarnessError(
                f"task '{cell.task.name}': item {several.id!r} has several correct choices {list(several.correct or ())}; "
                "contextual calibration scores items with one correct choice (evaluate the single-answer form of the task, "
                "e.g. TruthfulQA's mc1_targets, and calibrate that run)"
            )
        if cell.task.spec.contexts is not None:
            raise HarnessError(per_choice_refusal(f"task '{cell.task.name}'"))
    stored_by_cell: dict[str, list[StoredItem]] = {}
    for stored in store.items([run_id]):
        stored_by_cell.setdefault(stored.cell_id, []).append(stored)
    ready = dict(backends or {})
    counts = CacheCounts()
    written = 0
    for cell in cells:
        model = cell.model
        identity = ready[model.label].identity if model.label in ready else backend_class(model).identity_of(model)
        identity_json = json.dumps(identity, sort_keys=True)

        def backend(model: Any = model) -> Backend:
            if model.label not in ready:
                ready[model.label] = backend_class(model)(model)
            return ready[model.label]

        items = {item.id: item for item in cell.items}
        pool = {item.id: item for item in cell.pool}
        rows = [r for r in stored_by_cell.get(cell.cell_id, []) if r.item_id in items and isinstance(items[r.item_id].target, int)]
        for start in range(0, len(rows), chunk_items):
            chunk = rows[start : start + chunk_items]
            pending = []
            for row in chunk:
                item = items[row.item_id]
                shots = [pool[d] for d in row.demo_ids]
                for text in content_free:
                    neutral = content_free_item(item, text, cell.task.spec.input)
                    rendered = cell.template.render(cell.task, neutral, shots)
                    requests = loglikelihood_requests(rendered)
                    pending.append(_Pending(item.id, neutral, rendered.continuations, requests))
            resolved, fresh = resolve(pending, identity_json, store, backend, counts)
            content_free_scores: dict[str, list[tuple[float, ...]]] = {}
            for p, (results, _) in zip(pending, resolved):
                outcome = build_outcome(p.neutral, p.continuations, results, [])
                content_free_scores.setdefault(p.item_id, []).append(outcome.choice_logprobs)
            records = []
            for row in chunk:
                item = items[row.item_id]
                outcome = build_outcome(item, row.continuations or [], row.results(), [])
                cf = content_free_scores[item.id]
                # a content-free input the model could not score for this item is left out of its p_cf;
                # none left (or the item's own scores unusable): NO_CHOICE, never argmax's choice 0
                p_cf = content_free_probs(cf) if any(scorable(x) for x in cf) else None
                records.append(CalibrationRow(
                    run_id, cell.cell_id, item.id, [list(x) for x in cf], None if p_cf is None else p_cf.tolist(),
                    predicted_choice(outcome), calibrated_choice(outcome.choice_logprobs, p_cf), int(item.target),  # type: ignore[arg-type]
                ))
            store.write_items(run_id, [], fresh)  # the new content-free scores go to the response cache
            store.write_calibration(records, CALIBRATED_METRIC)  # with the items' acc_calibrated score, in one transaction
            written += len(records)
    for label, loaded in ready.items():
        if backends is None or label not in backends:
            loaded.close()

    export_run(store, run_id)  # the JSONL mirror shows acc_calibrated too
    return written


def calibration_summary(store: Store, run_id: str) -> list[CellCalibration]:
    """Per calibrated cell: accuracy and calibrated accuracy (Wilson CIs), McNemar between them,
    and how many items were unscorable (counted wrong) or lost a content-free input."""
    cells = {c.cell_id: c for c in store.cells([run_id])}
    by_cell: dict[str, list[CalibrationRow]] = {}
    for row in store.calibration(run_id):
        by_cell.setdefault(row.cell_id, []).append(row)
    out = []
    for cell_id, cell_rows in by_cell.items():
        cell = cells[cell_id]
        plain = [float(r.predicted == r.target) for r in cell_rows]
        calibrated = [float(r.calibrated == r.target) for r in cell_rows]
        p_cfs = [r.p_cf for r in cell_rows if r.p_cf is not None]
        p_cf = tuple(float(x) for x in np.mean(p_cfs, axis=0)) if p_cfs else ()
        unscorable = [r for r in cell_rows if r.calibrated == NO_CHOICE]
        dropped = sum(1 for r in cell_rows if r.calibrated != NO_CHOICE and not all(scorable(x) for x in r.content_free))
        label = f"{cell.task} | {cell.prompt} | {cell.shots}-shot {cell.selector} | {cell.model}"
        out.append(CellCalibration(cell_id, label, len(cell_rows), wilson(sum(plain), len(plain)), wilson(sum(calibrated), len(calibrated)),
                                   mcnemar(calibrated, plain).p_value, p_cf, len(unscorable),
                                   sum(1 for r in unscorable if r.p_cf is None), dropped))
    return sorted(out, key=lambda c: c.label)
