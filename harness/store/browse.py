"""Read queries for browsing a results database page by page (``harness view``): filtered, counted and
cut with LIMIT/OFFSET in SQL, so a page reads only its own rows. Each returns frozen records.

Scores live in ``items.scores_json`` as Python's ``json.dumps`` writes them, where an unscorable
score is ``NaN`` (not JSON that SQLite's ``json_extract`` reads): ``_SCORES`` turns NaN and the
infinities into null first, so a filter on a score treats an unscorable item as having none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ItemFilter:
    """What the items page asks for: text in the inputs or outputs, and score filters on ``metric``.

    ``lower_in``/``higher_in``: items whose ``metric`` score is lower in cell ``lower_in`` than in cell
    ``higher_in`` (for a 0/1 metric: wrong in one, right in the other; the page passes the cells in the
    metric's direction). ``disagree``: items whose ``metric`` score is not the same in every cell shown."""

    search: str = ""
    metric: str | None = None
    lower_in: str | None = None
    higher_in: str | None = None
    disagree: bool = False


@dataclass(frozen=True)
class ItemPage:
    """One page of an outputs matrix: item ids in split order, their rows per cell, and the matching total."""

    item_ids: list[str]
    rows: dict[tuple[str, str], StoredItem]  # (item id, cell id) -> the stored item
    total: int


def run_facets(store: Store) -> RunFacets:
    tasks = [str(r[0]) for r in store.db.execute("SELECT DISTINCT task FROM cells ORDER BY task")]
    models = [str(r[0]) for r in store.db.execute("SELECT DISTINCT model FROM cells ORDER BY model")]
    statuses = [str(r[0]) for r in store.db.execute("SELECT DISTINCT status FROM runs ORDER BY status")]
    return RunFacets(tasks, models, statuses)


def run_page(store: Store, *, task: str | None = None, model: str | None = None, status: str | None = None,
             offset: int = 0, limit: int = 50) -> RunPage:
    """Runs newest first, those with a cell of ``task`` / ``model`` and the given status, ``limit`` from ``offset``."""
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
    clause = " AND ".join(where)
    total = int(store.db.execute(f"SELECT COUNT(*) FROM runs WHERE {clause}", params).fetchone()[0])
    rows = store.db.execute(f"SELECT * FROM runs WHERE {clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                            [*params, limit, offset]).fetchall()
    runs = [run_from_row(r) for r in rows]
    ids = [r.id for r in runs]
    if not ids:
        return RunPage([], total)
    counts = {str(r[0]): int(r[1]) for r in store.db.execute(
        f"SELECT run_id, COUNT(*) FROM items WHERE run_id IN ({placeholders(ids)}) GROUP BY run_id", ids)}
    cells: dict[str, list[StoredCell]] = {i: [] for i in ids}
    for row in store.db.execute(f"SELECT * FROM cells WHERE run_id IN ({placeholders(ids)}) ORDER BY rowid", ids):
        cells[str(row["run_id"])].append(cell_from_row(row))
    return RunPage([RunOverview(r, cells[r.id], counts.get(r.id, 0)) for r in runs], total)


def run_overview(store: Store, run_id: str) -> RunOverview | None:
    """One run by its exact id, or None."""
    row = store.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    count = int(store.db.execute("SELECT COUNT(*) FROM items WHERE run_id = ?", (run_id,)).fetchone()[0])
    return RunOverview(run_from_row(row), store.cells([run_id]), count)


def item_page(store: Store, run_id: str, cell_ids: Sequence[str], where: ItemFilter, *, offset: int = 0, limit: int = 50) -> ItemPage:
    """The items of ``cell_ids`` (one task's cells of a run) that match ``where``, in split order, ``limit`` from ``offset``."""
    if not cell_ids:
        return ItemPage([], {}, 0)
    having, params = [], [run_id, *cell_ids]
    if where.search:
        like = _like(where.search)
        having.append("MAX(i.item_id LIKE ? ESCAPE '\\' OR json_extract(i.prompt_json, '$') LIKE ? ESCAPE '\\' "
                      "OR COALESCE(i.extracted, '') LIKE ? ESCAPE '\\' OR i.response_json LIKE ? ESCAPE '\\' "
                      "OR COALESCE(i.continuations_json, '') LIKE ? ESCAPE '\\' OR i.target_json LIKE ? ESCAPE '\\')")
        params += [like] * 6
    if where.metric and where.disagree:
        having.append(f"COUNT(DISTINCT {_score('i')}) > 1")
        params.append(where.metric)
    clause = " HAVING " + " AND ".join(having) if having else ""
    pairs = ""
    if where.metric and where.lower_in and where.higher_in:
        pairs = (f" AND i.item_id IN (SELECT a.item_id FROM items a JOIN items b ON b.run_id = a.run_id AND b.item_id = a.item_id "
                 f"WHERE a.run_id = ? AND a.cell_id = ? AND b.cell_id = ? AND {_score('a')} < {_score('b')})")
        params = [run_id, *cell_ids, run_id, where.lower_in, where.higher_in, where.metric, where.metric, *params[1 + len(cell_ids):]]
    grouped = (f"SELECT i.item_id AS item_id, MIN(i.position) AS position FROM items i "
               f"WHERE i.run_id = ? AND i.cell_id IN ({placeholders(cell_ids)}){pairs} GROUP BY i.item_id{clause}")
    total = int(store.db.execute(f"SELECT COUNT(*) FROM ({grouped})", params).fetchone()[0])
    ids = [str(r["item_id"]) for r in store.db.execute(f"{grouped} ORDER BY position, item_id LIMIT ? OFFSET ?", [*params, limit, offset])]
    return ItemPage(ids, item_rows(store, run_id, ids, cell_ids), total)


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
    runs = [run_from_row(r) for r in rows]
    ids = [r.id for r in runs]
    if not ids:
        return []
    counts = {str(r[0]): int(r[1]) for r in store.db.execute(
        f"SELECT run_id, COUNT(*) FROM items WHERE run_id IN ({placeholders(ids)}) GROUP BY run_id", ids)}
    cells: dict[str, list[StoredCell]] = {i: [] for i in ids}
    for row in store.db.execute(f"SELECT * FROM cells WHERE run_id IN ({placeholders(ids)}) ORDER BY rowid", ids):
        cells[str(row["run_id"])].append(cell_from_row(row))
    return [RunOverview(r, cells[r.id], counts.get(r.id, 0)) for r in runs]
