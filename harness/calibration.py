"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use") of a finished run.

A model's choice probabilities carry a bias from the prompt itself: the demonstrations'
labels, their order, a label word that is simply more frequent. Zhao et al. estimate that
bias by asking the same prompt (same template, same demonstrations) about *content-free*
inputs ("N/A", "", "[MASK]"), average the resulting choice probabilities into ``p_cf``
and predict ``argmax_i p_i / p_cf_i`` (the diagonal ``W = diag(p_cf)^-1`` of the paper).

This is a second pass over a stored run, not part of the runner: for every multiple-choice
or classification item it renders the content-free variants with the item's *stored*
demonstrations, scores them through the response cache (the model is loaded only on a
miss), and stores per item ``p_cf`` and the calibrated prediction in a ``calibration``
table of the same SQLite file, and the item score ``acc_calibrated`` into the run's items
(so ``harness compare --metric acc_calibrated`` and ``harness sensitivity`` rank and
pair-test it like any metric). Uncalibrated accuracy is recomputed from the stored
responses, so both sit side by side with Wilson CIs and a McNemar test on the same items.
Re-running is idempotent (rows and scores are replaced) and cheap (content-free scores are
cached chunk by chunk, so an interrupted pass resumes from the cache).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.backends import Backend, backend_class
from harness.errors import HarnessError
from harness.requests import LoglikelihoodRequest, Result, result_from_json
from harness.scoring.scorer import build_outcome
from harness.stats import Interval, mcnemar, wilson
from harness.store import Store
from harness.tasks import Item

CONTENT_FREE = ("N/A", "", "[MASK]")
CALIBRATED_TYPES = ("multiple_choice", "classification")
CALIBRATED_METRIC = "acc_calibrated"  # the item score calibrate adds, so compare/report/sensitivity can pair it

_SCHEMA = """CREATE TABLE IF NOT EXISTS calibration (
    run_id TEXT NOT NULL, cell_id TEXT NOT NULL, item_id TEXT NOT NULL,
    content_free_json TEXT NOT NULL, p_cf_json TEXT NOT NULL,
    predicted INTEGER NOT NULL, calibrated INTEGER NOT NULL, target INTEGER NOT NULL,
    PRIMARY KEY (run_id, cell_id, item_id))"""


# -- the arithmetic ---------------------------------------------------------------------
def softmax(logprobs: Sequence[float]) -> np.ndarray:
    values = np.asarray(logprobs, dtype=np.float64)
    values = np.exp(values - values.max())
    return values / values.sum()


def content_free_probs(choice_logprobs: Sequence[Sequence[float]]) -> np.ndarray:
    """p_cf: the content-free inputs' choice distributions (each normalised), averaged."""
    if not choice_logprobs:
        raise ValueError("no content-free scores")
    return np.mean([softmax(lp) for lp in choice_logprobs], axis=0)


def calibrated_choice(choice_logprobs: Sequence[float], p_cf: np.ndarray) -> int:
    """argmax of W p with W = diag(p_cf)^-1 (b = 0), i.e. of log p_i - log p_cf_i; ties: first."""
    scores = np.log(softmax(choice_logprobs)) - np.log(np.maximum(p_cf, 1e-300))
    return int(np.argmax(scores))


def content_free_item(item: Item, text: str) -> Item:
    """The item with its input replaced by a content-free ``text``.

    Templates read row fields (``{{ sentence }}``), not only ``input``, so every string
    field whose value occurs in the item's input is replaced too; choices, target and
    every other field stay, so the rendered prompt differs only where the input was.
    """
    row = {k: (text if isinstance(v, str) and v and v in item.input else v) for k, v in item.row.items()}
    return dataclasses.replace(item, row=row, input=text)


# -- the pass over a stored run ---------------------------------------------------------
@dataclass(frozen=True)
class CellCalibration:
    cell_id: str
    label: str
    n: int
    acc: Interval
    acc_calibrated: Interval
    p_value: float  # McNemar, calibrated vs uncalibrated on the same items
    p_cf_mean: tuple[float, ...]  # the average content-free distribution (the estimated bias)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id, "cell": self.label, "n": self.n,
            "acc": self.acc.mean, "acc_low": self.acc.low, "acc_high": self.acc.high,
            "acc_calibrated": self.acc_calibrated.mean, "acc_calibrated_low": self.acc_calibrated.low,
            "acc_calibrated_high": self.acc_calibrated.high, "mcnemar_p": self.p_value, "p_cf_mean": list(self.p_cf_mean),
        }


def _ensure_table(store: Store) -> None:
    store.db.execute(_SCHEMA)


@dataclass(frozen=True)
class _Pending:
    """One content-free rendering waiting for its scores (``requests`` is what ``_resolve`` reads)."""

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
    from harness.runner import ExperimentSpec, RunSummary, _resolve, plan

    if not content_free:
        raise HarnessError("calibration needs at least one content-free input")
    _ensure_table(store)
    spec = ExperimentSpec.model_validate(store.run_config(run_id)["spec"])
    stored_cells = {c.cell_id for c in store.cells([run_id])}
    cells = [c for c in plan(spec) if c.cell_id in stored_cells and c.task.spec.type in CALIBRATED_TYPES]
    if not cells:
        raise HarnessError(f"run {run_id} has no multiple-choice or classification cells to calibrate")
    rows_by_cell: dict[str, list[Any]] = {}
    for row in store.items([run_id]):
        rows_by_cell.setdefault(row["cell_id"], []).append(row)
    ready = dict(backends or {})
    summary = RunSummary(run_id=run_id, resumed=True, cells=cells)
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
        rows = [r for r in rows_by_cell.get(cell.cell_id, []) if r["item_id"] in items and isinstance(items[r["item_id"]].target, int)]
        for start in range(0, len(rows), chunk_items):
            chunk = rows[start : start + chunk_items]
            pending = []
            for row in chunk:
                item = items[row["item_id"]]
                shots = [pool[d] for d in json.loads(row["demo_ids_json"])]
                for text in content_free:
                    neutral = content_free_item(item, text)
                    rendered = cell.template.render(cell.task, neutral, shots)
                    requests = tuple(LoglikelihoodRequest(context=rendered.prompt, continuation=c) for c in rendered.continuations)
                    pending.append(_Pending(item.id, neutral, rendered.continuations, requests))
            resolved, fresh = _resolve(pending, identity_json, store, backend, summary)  # type: ignore[arg-type]
            content_free_scores: dict[str, list[tuple[float, ...]]] = {}
            for p, (results, _) in zip(pending, resolved):
                outcome = build_outcome(p.neutral, p.continuations, results, [])
                content_free_scores.setdefault(p.item_id, []).append(outcome.choice_logprobs)
            records = []
            for row in chunk:
                item = items[row["item_id"]]
                stored: list[Result] = [result_from_json(r) for r in json.loads(row["response_json"])]
                real = build_outcome(item, json.loads(row["continuations_json"] or "[]"), stored, []).choice_logprobs
                cf = content_free_scores[item.id]
                p_cf = content_free_probs(cf)
                records.append((run_id, cell.cell_id, item.id, json.dumps([list(x) for x in cf]), json.dumps(p_cf.tolist()),
                                int(np.argmax(real)), calibrated_choice(real, p_cf), int(item.target)))  # type: ignore[arg-type]
            store.write_items(run_id, [], fresh)  # the new content-free scores go to the response cache
            with store.transaction():  # the calibration rows and the items' acc_calibrated score together
                store.db.executemany("INSERT OR REPLACE INTO calibration VALUES (?,?,?,?,?,?,?,?)", records)
                store.db.executemany(
                    f"UPDATE items SET scores_json = json_set(scores_json, '$.{CALIBRATED_METRIC}', ?) "
                    "WHERE run_id = ? AND cell_id = ? AND item_id = ?",
                    [(float(r[6] == r[7]), r[0], r[1], r[2]) for r in records],
                )
            written += len(records)
    for label, loaded in ready.items():
        if backends is None or label not in backends:
            loaded.close()
    from harness.runner import export_run

    export_run(store, run_id)  # the JSONL mirror shows acc_calibrated too
    return written


def calibration_summary(store: Store, run_id: str) -> list[CellCalibration]:
    """Per calibrated cell: accuracy and calibrated accuracy (Wilson CIs) and McNemar between them."""
    _ensure_table(store)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    rows = list(store.db.execute("SELECT * FROM calibration WHERE run_id = ? ORDER BY cell_id, item_id", (run_id,)))
    by_cell: dict[str, list[Any]] = {}
    for row in rows:
        by_cell.setdefault(row["cell_id"], []).append(row)
    out = []
    for cell_id, cell_rows in by_cell.items():
        cell = cells[cell_id]
        plain = [float(r["predicted"] == r["target"]) for r in cell_rows]
        calibrated = [float(r["calibrated"] == r["target"]) for r in cell_rows]
        p_cf = np.mean([json.loads(r["p_cf_json"]) for r in cell_rows], axis=0)
        label = f"{cell.task} | {cell.prompt} | {cell.shots}-shot {cell.selector} | {cell.model}"
        out.append(CellCalibration(cell_id, label, len(cell_rows), wilson(sum(plain), len(plain)), wilson(sum(calibrated), len(calibrated)),
                                   mcnemar(calibrated, plain).p_value, tuple(float(x) for x in p_cf)))
    return sorted(out, key=lambda c: c.label)
