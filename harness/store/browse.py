"""Read queries for browsing a results database page by page (``harness view``). Each returns frozen records.

Runs are filtered, counted and cut with LIMIT/OFFSET in SQL. The items page works on a ``ScoreTable``: one
task's cells of a run as arrays (items in split order x cells: the main metric's score, whether stored, the
item's label and cluster), read in one pass over the ``items_scores`` covering index; filters and sorts are
array operations on it, and only the page's own rows are then read in full. The viewer keeps tables between
requests (harness/view/app.py); ``item_page`` reads one itself when not given one. Full-text search narrows
rows with the trigram index ``items_search`` (migration 006) and checks each candidate with LIKE on the same
text, so it matches substrings exactly as LIKE does (ASCII case-insensitive, wildcards literal).

Scores live in ``items.scores_json`` as Python's ``json.dumps`` writes them, where an unscorable
score is ``NaN`` (not JSON that SQLite's ``json_extract`` reads): ``_SCORES`` turns NaN and the
infinities into null first, so a filter on a score treats an unscorable item as having none.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np

from harness.store.migrations import SEARCH_COLUMNS, search_values
from harness.store.records import StoredCell, StoredItem, StoredRun
from harness.store.store import Store, cell_from_row, item_from_row, placeholders, run_from_row

_SCORES = "replace(replace(replace({0}.scores_json, 'NaN', 'null'), '-Infinity', 'null'), 'Infinity', 'null')"


def _score(alias: str) -> str:
    """SQL for one metric's score of the row ``alias`` (the metric name is the next parameter); NULL when unscorable."""
    return f"json_extract({_SCORES.format(alias)}, '$.\"' || ? || '\"')"


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class RunOverview:
    """A run as the runs page lists it: the run, its cells and how many items are stored of those planned."""

    run: StoredRun
    cells: list[StoredCell]
    n_items: int

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.cells))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.cells))

    @property
    def n_planned(self) -> int:
        return sum(c.n_planned for c in self.cells)


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first, and how many runs match the filters in all."""

    runs: list[RunOverview]
    total: int


@dataclass(frozen=True)
class RunFacets:
    """The values the runs page can filter on."""

    tasks: list[str]
    models: list[str]
    statuses: list[str]


ItemSort = Literal["split", "margin"]


@dataclass(frozen=True)
class ItemFilter:
    """What the items page asks for: text in the inputs or outputs, score filters on ``metric``, a label, a cluster, an order.

    ``lower_in``/``higher_in``: items whose ``metric`` score is lower in cell ``lower_in`` than in cell
    ``higher_in`` (for a 0/1 metric: wrong in one, right in the other; the page passes the cells in the
    metric's direction). ``disagree``: items whose ``metric`` score is not the same in every cell shown
    (unscorable scores left out). ``unscorable``: items with no ``metric`` score (NaN, or none written) in
    at least one cell shown that stores them. ``label``: items whose target is this stored value (its JSON
    text, as ``ScoreTable.labels`` lists them: ``2`` for choice 2). ``cluster``: items of this cluster
    (the task's ``cluster:`` value). ``sort``: split order, or ``margin``: by the margin in cell
    ``margin_in`` (``margins``), smallest first (the most confidently wrong), items without one last."""

    search: str = ""
    metric: str | None = None
    lower_in: str | None = None
    higher_in: str | None = None
    disagree: bool = False
    unscorable: bool = False
    label: str | None = None
    cluster: str | None = None
    sort: ItemSort = "split"
    margin_in: str | None = None


@dataclass(frozen=True)
class ItemPage:
    """One page of an outputs matrix: item ids in the order asked, their rows per cell, and the matching total."""

    item_ids: list[str]
    rows: dict[tuple[str, str], StoredItem]  # (item id, cell id) -> the stored item
    total: int


@dataclass(frozen=True)
class ScoreTable:
    """One task's cells of a run as arrays, items in split order (position, then id): what the items page filters on.

    ``scores[i, c]``: item i's ``metric`` score in cell ``cell_ids[c]``, NaN when unscorable or not written;
    ``stored[i, c]``: whether cell c stores item i at all. ``labels``/``clusters``: per item, its target's JSON
    text and its cluster (None when the task declares none), from the first cell that stores it."""

    run_id: str
    cell_ids: tuple[str, ...]
    metric: str
    item_ids: tuple[str, ...]
    scores: np.ndarray
    stored: np.ndarray
    labels: tuple[str, ...]
    clusters: tuple[str | None, ...]

    def column(self, cell_id: str) -> int:
        return self.cell_ids.index(cell_id)

    def label_values(self) -> list[str]:
        """The distinct labels, numbers in numeric order, then the others in text order."""
        return sorted(set(self.labels), key=_label_key)

    def cluster_values(self) -> list[str]:
        return sorted({c for c in self.clusters if c is not None})


def _label_key(text: str) -> tuple[int, float, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return 2, 0.0, text
    return (0, float(value), text) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, text)


def score_table(store: Store, run_id: str, cell_ids: Sequence[str], metric: str) -> ScoreTable:
    """The ``ScoreTable`` of ``cell_ids`` (one task's cells of run ``run_id``) on ``metric``: one pass over the covering index."""
    rows = store.db.execute(
        f"SELECT item_id, cell_id, position, {_score('items')}, target_json, cluster FROM items "
        f"WHERE run_id = ? AND cell_id IN ({placeholders(cell_ids)})", [metric, run_id, *cell_ids]).fetchall()
    column = {c: k for k, c in enumerate(cell_ids)}
    index: dict[str, int] = {}
    first: dict[str, tuple[int, str, str | None]] = {}  # item id -> (position, label, cluster) of the first cell storing it
    where_rows = []
    for item_id, cell_id, position, score, target, cluster in rows:
        k = index.get(item_id)
        if k is None:
            k = index[item_id] = len(index)
            first[item_id] = (position, target, cluster)
        elif position < first[item_id][0]:
            first[item_id] = (position, first[item_id][1], first[item_id][2])
        where_rows.append((k, column[cell_id], math.nan if score is None else float(score)))
    ids = list(index)
    order = sorted(range(len(ids)), key=lambda k: (first[ids[k]][0], ids[k]))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    scores = np.full((len(ids), len(cell_ids)), np.nan)
    stored = np.zeros((len(ids), len(cell_ids)), dtype=bool)
    if where_rows:
        at = np.array([r[0] for r in where_rows], dtype=np.int64)
        col = np.array([r[1] for r in where_rows], dtype=np.int64)
        scores[rank[at], col] = np.array([r[2] for r in where_rows], dtype=np.float64)
        stored[rank[at], col] = True
    in_order = [ids[k] for k in order]
    return ScoreTable(run_id, tuple(cell_ids), metric, tuple(in_order), scores, stored, tuple(first[i][1] for i in in_order),
                      tuple(first[i][2] for i in in_order))


def margins(store: Store, run_id: str, cell_id: str, item_ids: Sequence[str]) -> np.ndarray:
    """Per item of ``item_ids`` (NaN where there is none), its multiple-choice margin in the cell: the log-prob of the
    correct choice (the best of several correct ones) minus that of the best wrong choice. Positive: right by that much;
    negative: wrong by that much. None for an item not stored in the cell, not multiple choice, or with a NaN log-prob."""
    at = {item: k for k, item in enumerate(item_ids)}
    out = np.full(len(item_ids), np.nan)
    rows = store.db.execute("SELECT item_id, continuations_json, response_json, target_json FROM items WHERE run_id = ? AND cell_id = ? "
                            "AND continuations_json IS NOT NULL", (run_id, cell_id))
    for item_id, continuations, response, target in rows:
        k = at.get(item_id)
        if k is not None:
            out[k] = choice_margin(len(json.loads(continuations)), json.loads(response), json.loads(target))
    return out


def choice_margin(n_choices: int, response: Sequence[dict[str, object]], target: object) -> float:
    """The log-prob of the correct choice minus the best wrong one's, over the first ``n_choices`` results (acc_mutual_info's unconditional ones follow);
    NaN when a log-prob is missing or NaN, the target is not a choice index, or no choice is wrong."""
    logprobs = []
    for result in response[:n_choices]:
        value = result.get("logprob")
        if not isinstance(value, (int, float)) or value != value:
            return math.nan
        logprobs.append(float(value))
    correct = set(target) if isinstance(target, list) else {target}
    if len(logprobs) != n_choices or not correct or not all(isinstance(t, int) and 0 <= t < n_choices for t in correct):
        return math.nan
    wrong = [v for k, v in enumerate(logprobs) if k not in correct]
    if not wrong:
        return math.nan
    return max(logprobs[k] for k in correct) - max(wrong)  # type: ignore[index]


def search_rows(store: Store, run_id: str, cell_ids: Sequence[str], text: str) -> set[str]:
    """The item ids of ``cell_ids``' rows whose text (``migrations.SEARCH_COLUMNS``) contains ``text``, ASCII case-insensitive.

    Three characters or more: the trigram index names the rows that hold every trigram of ``text`` (each quoted, so
    nothing in it is query syntax), and LIKE checks those. Shorter, or without the index: LIKE over the cells' rows."""
    if "\x00" in text:  # SQLite's LIKE ends a pattern at a NUL, which would match every row
        return set()
    like = _like(text)
    checks = " OR ".join(f"{expr} LIKE ? ESCAPE '\\'" for expr in search_values("i"))
    cells = f"i.run_id = ? AND i.cell_id IN ({placeholders(cell_ids)})"
    params: list[object] = [run_id, *cell_ids, *[like] * len(SEARCH_COLUMNS)]
    grams = sorted({text[k:k + 3] for k in range(len(text) - 2)})
    # the index's candidates drive the loop (CROSS JOIN keeps that order): each is one rowid lookup, then LIKE; a database the
    # viewer read without migrating it has no index: LIKE over the rows, as for a short text
    if grams and "006_view_indices" not in store.pending:
        query = " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)
        sql = (f"SELECT DISTINCT i.item_id FROM items_search s CROSS JOIN items i ON i.rowid = s.rowid "
               f"WHERE s.items_search MATCH ? AND {cells} AND ({checks})")
        params.insert(0, query)
    else:
        sql = f"SELECT DISTINCT i.item_id FROM items i WHERE {cells} AND ({checks})"
    return {str(r[0]) for r in store.db.execute(sql, params)}


def item_page(store: Store, run_id: str, cell_ids: Sequence[str], where: ItemFilter, *, offset: int = 0, limit: int = 50,
              table: ScoreTable | None = None, margin: np.ndarray | None = None, matches: set[str] | None = None) -> ItemPage:
    """The items of ``cell_ids`` (one task's cells of a run) that match ``where``, in split order (or by margin), ``limit`` from
    ``offset``. ``table``: the cells' ``ScoreTable`` on ``where.metric`` (read here when not given); ``margin``: the margins of
    the table's items in ``where.margin_in`` (read here when sorting by margin and not given); ``matches``: the item ids
    ``search_rows`` finds for ``where.search`` (searched here when not given)."""
    if not cell_ids:
        return ItemPage([], {}, 0)
    if table is None:
        table = score_table(store, run_id, cell_ids, where.metric or "")
    keep = np.ones(len(table.item_ids), dtype=bool)
    shown = table.stored
    if where.metric and where.lower_in and where.higher_in:
        with np.errstate(invalid="ignore"):
            keep &= table.scores[:, table.column(where.lower_in)] < table.scores[:, table.column(where.higher_in)]  # NaN: never
    if where.metric and where.disagree:
        scored = shown & ~np.isnan(table.scores)
        high = np.where(scored, table.scores, -np.inf).max(axis=1, initial=-np.inf)
        low = np.where(scored, table.scores, np.inf).min(axis=1, initial=np.inf)
        keep &= high > low
    if where.metric and where.unscorable:
        keep &= (shown & np.isnan(table.scores)).any(axis=1)
    if where.label is not None:
        keep &= np.array([label == where.label for label in table.labels], dtype=bool)
    if where.cluster is not None:
        keep &= np.array([cluster == where.cluster for cluster in table.clusters], dtype=bool)
    if where.search:
        found = search_rows(store, run_id, cell_ids, where.search) if matches is None else matches
        keep &= np.array([item in found for item in table.item_ids], dtype=bool)
    order = np.flatnonzero(keep)
    if where.sort == "margin" and where.margin_in:
        if margin is None:
            margin = margins(store, run_id, where.margin_in, table.item_ids)
        values = margin[order]
        order = order[np.lexsort((order, np.where(np.isnan(values), np.inf, values), np.isnan(values)))]
    ids = [table.item_ids[k] for k in order[offset:offset + limit]]
    return ItemPage(ids, item_rows(store, run_id, ids, cell_ids), int(keep.sum()))


def run_facets(store: Store) -> RunFacets:
    tasks = [str(r[0]) for r in store.db.execute("SELECT DISTINCT task FROM cells ORDER BY task")]
    models = [str(r[0]) for r in store.db.execute("SELECT DISTINCT model FROM cells ORDER BY model")]
    statuses = [str(r[0]) for r in store.db.execute("SELECT DISTINCT status FROM runs ORDER BY status")]
    return RunFacets(tasks, models, statuses)


def run_page(store: Store, *, task: str | None = None, model: str | None = None, status: str | None = None,
             created_from: date | None = None, created_to: date | None = None, offset: int = 0, limit: int = 50) -> RunPage:
    """Runs newest first, those with a cell of ``task`` / ``model``, the given status and created on a day from ``created_from``
    to ``created_to`` (both included, UTC days as ``created_at`` records them), ``limit`` from ``offset``."""
    where, params = ["1"], []
    if task:
        where.append("EXISTS (SELECT 1 FROM cells c WHERE c.run_id = runs.id AND c.task = ?)")
        params.append(task)
    if model:
        where.append("EXISTS (SELECT 1 FROM cells c WHERE c.run_id = runs.id AND c.model = ?)")
        params.append(model)
    if status:
        where.append("runs.status = ?")
        params.append(status)
    if created_from is not None:
        where.append("runs.created_at >= ?")
        params.append(created_from.isoformat())
    if created_to is not None:
        where.append("runs.created_at < ?")  # created_at is an ISO time: before the next day
        params.append((created_to + timedelta(days=1)).isoformat())
    clause = " AND ".join(where)
    total = int(store.db.execute(f"SELECT COUNT(*) FROM runs WHERE {clause}", params).fetchone()[0])
    rows = store.db.execute(f"SELECT * FROM runs WHERE {clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                            [*params, limit, offset]).fetchall()
    return RunPage(_overviews(store, rows), total)


def _overviews(store: Store, rows: Sequence[sqlite3.Row]) -> list[RunOverview]:
    """The overviews of these ``runs`` rows, in their order: each run's cells and stored item count."""
    runs = [run_from_row(r) for r in rows]
    ids = [r.id for r in runs]
    if not ids:
        return []
    if "007_run_digests" in store.pending:  # a database the viewer read without migrating it: count the rows
        counts = {str(r[0]): int(r[1]) for r in store.db.execute(
            f"SELECT run_id, COUNT(*) FROM items WHERE run_id IN ({placeholders(ids)}) GROUP BY run_id", ids)}
    else:  # kept by migration 007's triggers: no count over a big run's rows
        counts = {r.id: int(row["n_items"]) for r, row in zip(runs, rows)}
    cells: dict[str, list[StoredCell]] = {i: [] for i in ids}
    for row in store.db.execute(f"SELECT * FROM cells WHERE run_id IN ({placeholders(ids)}) ORDER BY rowid", ids):
        cells[str(row["run_id"])].append(cell_from_row(row))
    return [RunOverview(r, cells[r.id], counts.get(r.id, 0)) for r in runs]


def run_overview(store: Store, run_id: str) -> RunOverview | None:
    """One run by its exact id, or None."""
    row = store.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    (overview,) = _overviews(store, [row])
    return overview


def item_rows(store: Store, run_id: str, item_ids: Sequence[str], cell_ids: Sequence[str] | None = None) -> dict[tuple[str, str], StoredItem]:
    """The stored rows of ``item_ids`` in run ``run_id`` (only ``cell_ids``' when given), keyed by (item id, cell id)."""
    if not item_ids:
        return {}
    sql = f"SELECT * FROM items WHERE run_id = ? AND item_id IN ({placeholders(item_ids)})"
    params = [run_id, *item_ids]
    if cell_ids is not None:
        sql += f" AND cell_id IN ({placeholders(cell_ids)})"
        params += list(cell_ids)
    return {(row.item_id, row.cell_id): row for row in (item_from_row(r) for r in store.db.execute(sql + " ORDER BY position", params))}


def item_exists(store: Store, run_id: str, item_id: str) -> bool:
    return store.db.execute("SELECT 1 FROM items WHERE run_id = ? AND item_id = ? LIMIT 1", (run_id, item_id)).fetchone() is not None


def ab_partners(store: Store, run_id: str, limit: int = 20) -> list[RunOverview]:
    """Other runs, newest first, with a cell of the same task, prompt, shots and selector as one of ``run_id``'s:
    the runs ``harness ab --base-run/--tuned-run`` could pair it with."""
    rows = store.db.execute(
        "SELECT r.* FROM runs r WHERE r.id != ? AND EXISTS (SELECT 1 FROM cells c JOIN cells o ON o.task = c.task AND o.prompt = c.prompt "
        "AND o.shots = c.shots AND o.selector = c.selector WHERE c.run_id = r.id AND o.run_id = ?) "
        "ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?", (run_id, run_id, limit)).fetchall()
    return _overviews(store, rows)


def label_text(value: str) -> str:
    """A stored target (``ScoreTable.labels``) as the label filter names it: ``choice 2`` for a choice index, else its value."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if isinstance(decoded, int) and not isinstance(decoded, bool):
        return f"choice {decoded}"
    return value
