"""What ``harness view`` shows of a run, computed once and kept with the run: its digests.

A run page is ``compare_runs`` of the run, and at 200,000 items x 8 cells that takes about 40 s (the
degenerate-cell check decodes every stored response, the summaries every score, the ranking resamples
the items); the runs page's best cells and an items page's score table read every row too. The viewer
never writes the database, so it cannot keep what it computed beyond its own process. Instead the
commands that write a run (``harness run``, ``rescore``, ``calibrate``, or ``harness digest`` for a
run stored before) compute those values when they finish and store them as digests
(``Store.write_digest``), and the viewer reads them: its first view of a big run is a read, not a
recomputation.

A digest is only ever a copy of what the viewer would compute itself, and is used only while that is
so: the store hands one out only at the run revision it was computed at (every write to the run's items,
cells or calibration rows raises it, migration 007), and only to the code that made it (``PRODUCER``: a
hash of harness's own source and of the numeric libraries' versions; any other version computes the page
again). What is kept: the run page's values from the comparison at the default settings (a page asked
with a margin is computed), the runs page's best cells, and each task's score table (and, for a
multiple-choice task, each cell's margins: the items page's sort). Each is decoded
into the same frozen records the live path builds (pydantic validates the JSON into them; the score
table's arrays are ``numpy.load`` with pickles refused), so a page from a digest is the page
computed live, byte for byte (tests/view/test_digest.py).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydantic

from harness.analysis.compare import Comparison, compare_runs
from harness.core.errors import HarnessError
from harness.store import Store, StoredDigest
from harness.store.browse import RunOverview, ScoreTable, margins, run_overview, score_table
from harness.store.store import now
from harness.tasks.kinds import task_kind
from harness.view.context import RunResults, run_results
from harness.view.pages import BestCell, best_cells, task_cells

T = TypeVar("T")
DIGEST_MIN_ROWS = 20_000  # item rows from which `harness run` writes a run's digests (below, the viewer computes a page in about a second)
DEFAULT_KEY = "{}"  # the run page at the default settings (no margin)


@functools.cache
def producer() -> str:
    """A hash of the code that computes a digest: harness's Python source and the versions of the libraries its numbers
    come from. A digest made by any other code is not used (the page is computed again)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in ("numpy", "scipy", "pydantic"):
        try:
            digest.update(f"{name}=={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent\0".encode())
    return digest.hexdigest()[:32]


RESULTS = pydantic.TypeAdapter(RunResults)
BEST = pydantic.TypeAdapter(list[BestCell])


def _decode(adapter: pydantic.TypeAdapter[T], body: bytes) -> T | None:
    """The record a digest's JSON holds, None when it is not one (a digest from a damaged file: the page is computed instead)."""
    try:
        return adapter.validate_json(body)
    except pydantic.ValidationError:
        return None


def _table_key(cell_ids: tuple[str, ...], metric: str) -> str:
    return json.dumps({"cells": list(cell_ids), "metric": metric})


def _encode_table(table: ScoreTable) -> bytes:
    out = io.BytesIO()
    text = json.dumps({"run_id": table.run_id, "cell_ids": table.cell_ids, "metric": table.metric, "item_ids": table.item_ids,
                       "labels": table.labels, "clusters": table.clusters}).encode()
    np.savez(out, scores=table.scores, stored=table.stored, text=np.frombuffer(text, dtype=np.uint8))
    return out.getvalue()


def _decode_table(body: bytes, cell_ids: tuple[str, ...], metric: str) -> ScoreTable | None:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
            scores, stored, text = arrays["scores"], arrays["stored"], arrays["text"]
        facts = json.loads(text.tobytes())
    except (ValueError, KeyError, OSError):
        return None
    n = len(facts.get("item_ids", ()))
    shape = (n, len(cell_ids))
    if (tuple(facts.get("cell_ids", ())) != cell_ids or facts.get("metric") != metric or scores.shape != shape or stored.shape != shape
            or scores.dtype != np.float64 or stored.dtype != np.bool_ or len(facts.get("labels", ())) != n or len(facts.get("clusters", ())) != n):
        return None
    return ScoreTable(str(facts["run_id"]), cell_ids, metric, tuple(map(str, facts["item_ids"])), scores, stored,
                      tuple(map(str, facts["labels"])), tuple(None if c is None else str(c) for c in facts["clusters"]))


def _encode_margins(values: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, *values.values())  # arr_0, arr_1...: the cells in the table's order
    return out.getvalue()


def _decode_margins(body: bytes, cell_ids: tuple[str, ...], n: int) -> dict[str, np.ndarray] | None:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
            found = {cell: arrays[f"arr_{k}"] for k, cell in enumerate(cell_ids)}
    except (ValueError, KeyError, OSError):
        return None
    return found if all(v.shape == (n,) and v.dtype == np.float64 for v in found.values()) else None


def _read(store: Store, run_id: str, kind: str, key: str, decode: Callable[[bytes], T | None]) -> T | None:
    found = store.digest(run_id, kind, key, producer())
    return None if found is None else decode(found.body)


def run_page_digest(store: Store, run_id: str) -> RunResults | None:
    """The run page's comparison values at the default settings, if a current digest holds them."""
    return _read(store, run_id, "run_page", DEFAULT_KEY, functools.partial(_decode, RESULTS))


def best_cells_digest(store: Store, run_id: str) -> list[BestCell] | None:
    """The runs page's best cells of the run, if a current digest holds them."""
    return _read(store, run_id, "best_cells", DEFAULT_KEY, functools.partial(_decode, BEST))


def score_table_digest(store: Store, run_id: str, cell_ids: tuple[str, ...], metric: str) -> ScoreTable | None:
    """The items page's score table of these cells on ``metric``, if a current digest holds it."""
    return _read(store, run_id, "score_table", _table_key(cell_ids, metric), lambda body: _decode_table(body, cell_ids, metric))


def margins_digest(store: Store, table: ScoreTable, cell_id: str) -> np.ndarray | None:
    """The multiple-choice margins in ``cell_id`` of the table's items (browse.margins), if a current digest holds them."""
    found = _read(store, table.run_id, "margins", _table_key(table.cell_ids, table.metric),
                  lambda body: _decode_margins(body, table.cell_ids, len(table.item_ids)))
    return None if found is None else found.get(cell_id)


def page_results(store: Store, overview: RunOverview, margin: float | None = None) -> RunResults:
    """What the run page shows from the run's comparison, computed (the viewer's own path when no digest serves it)."""
    if not overview.n_items:
        return run_results(None, "no items stored yet")
    try:
        return run_results(compare_runs(store, [overview.run.id], margin=margin))
    except HarnessError as exc:
        return run_results(None, str(exc))


@dataclass(frozen=True)
class Written:
    """What ``write_digests`` kept: the run, its revision, the digests' kinds and their size in bytes."""

    run_id: str
    revision: int
    kinds: tuple[str, ...]
    size: int
    stale: bool  # the run changed while its digests were computed (nothing kept: the viewer computes its pages)


def write_digests(store: Store, run_id: str, comparison: Comparison | None = None) -> Written:
    """Compute and keep the run's digests (run page, best cells, each task's score table) at its current revision.
    ``comparison``: ``compare_runs(store, [run_id])`` at its defaults when the caller has it (``harness run`` printed it)."""
    revision = store.run_revision(run_id)
    overview = run_overview(store, run_id)
    if revision is None or overview is None:
        raise HarnessError(f"no run {run_id} in {store.path} to digest")
    results = run_results(comparison) if comparison is not None and overview.n_items else page_results(store, overview)
    bodies: list[tuple[str, str, bytes]] = [
        ("run_page", DEFAULT_KEY, json.dumps(asdict(results), ensure_ascii=False).encode()),
        ("best_cells", DEFAULT_KEY, json.dumps([asdict(b) for b in best_cells(store, overview)], ensure_ascii=False).encode()),
    ]
    for task in overview.tasks:
        cell_ids, metric, _ = task_cells(overview, task)
        if cell_ids:
            table = score_table(store, run_id, cell_ids, metric)
            bodies.append(("score_table", _table_key(cell_ids, metric), _encode_table(table)))
            if any(c.task == task and task_kind(c.task_type).answer == "choice" for c in overview.cells):  # the items page's margin sort
                bodies.append(("margins", _table_key(cell_ids, metric),
                               _encode_margins({c: margins(store, run_id, c, table.item_ids) for c in cell_ids})))
    stamp, code = now(), producer()
    kept = [store.write_digest(StoredDigest(run_id, kind, key, revision, code, stamp, body)) for kind, key, body in bodies]
    return Written(run_id, revision, tuple(kind for kind, _, _ in bodies), sum(len(b) for _, _, b in bodies), not all(kept))


def has_digests(store: Store, run_id: str) -> bool:
    """Whether the run's run-page digest is current (``harness digest`` without runs skips those)."""
    return store.digest(run_id, "run_page", DEFAULT_KEY, producer()) is not None
