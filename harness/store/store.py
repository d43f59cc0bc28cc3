"""SQLite storage: runs, cells, items, calibration rows and the response cache.

One database file (default ``results/harness.db``) holds everything, so a comparison can
pair items across runs and a repeated run is served from the cache. Every batch of items is
written in one transaction together with its cache entries: a run killed at any moment
leaves whole items or nothing, and resuming re-queries only what is missing.

This is the one module that speaks SQL: reads return the frozen records of
``harness.store.records`` with their JSON columns decoded here, once (a test keeps SQL and
column decoding out of every other module of ``harness/``).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.requests import Result, result_from_json, result_to_json
from harness.store.migrations import MIGRATIONS
from harness.store.records import CalibrationRow, ItemRecord, ItemScores, StoredCell, StoredItem, StoredRun

DEFAULT_DB = Path("results") / "harness.db"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run(row: sqlite3.Row) -> StoredRun:
    return StoredRun(
        id=row["id"], created_at=row["created_at"], finished_at=row["finished_at"], status=row["status"],
        config_hash=row["config_hash"], config=json.loads(row["config_json"]), versions=json.loads(row["versions_json"]),
        seed=row["seed"],
    )


def _cell(row: sqlite3.Row) -> StoredCell:
    return StoredCell(
        run_id=row["run_id"], cell_id=row["cell_id"], task=row["task"], task_type=row["task_type"], prompt=row["prompt"],
        prompt_sha256=row["prompt_sha256"], shots=row["shots"], selector=row["selector"], model=row["model"],
        model_json=json.loads(row["model_json"]), metrics=json.loads(row["metrics_json"]), n_planned=row["n_planned"],
    )


def _item(row: sqlite3.Row) -> StoredItem:
    return StoredItem(
        run_id=row["run_id"], cell_id=row["cell_id"], item_id=row["item_id"], position=row["position"],
        prompt=json.loads(row["prompt_json"]),
        continuations=json.loads(row["continuations_json"]) if row["continuations_json"] else None,
        demo_ids=json.loads(row["demo_ids_json"]), target=json.loads(row["target_json"]),
        response=json.loads(row["response_json"]), extracted=row["extracted"], scores=json.loads(row["scores_json"]),
        latency_s=row["latency_s"], n_tokens=row["n_tokens"], cached=bool(row["cached"]), cluster=row["cluster"],
    )


def _calibration(row: sqlite3.Row) -> CalibrationRow:
    return CalibrationRow(
        run_id=row["run_id"], cell_id=row["cell_id"], item_id=row["item_id"], content_free=json.loads(row["content_free_json"]),
        p_cf=json.loads(row["p_cf_json"]), predicted=row["predicted"], calibrated=row["calibrated"], target=row["target"],
    )


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class Store:
    """The results database; opening it applies the migrations it has not seen yet."""

    def __init__(self, path: Path | str = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise HarnessError(f"{self.path}: not a usable SQLite database ({exc})") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.row_factory = sqlite3.Row
        self._migrate()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row["name"] for row in self.db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name not in done:
                with self.transaction():
                    if self.db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                        continue  # another process opening the same file applied it meanwhile
                    for statement in sql.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- runs ---------------------------------------------------------------------
    def create_run(self, run_id: str, config_hash: str, config: dict[str, Any], versions: dict[str, Any], seed: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?, ?, ?, ?)",
                (run_id, now(), config_hash, json.dumps(config, sort_keys=True), json.dumps(versions, sort_keys=True), seed),
            )

    def item_count(self, run_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items WHERE run_id = ?", (run_id,)).fetchone()[0])

    def unfinished_run(self, config_hash: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM runs WHERE config_hash = ? AND status = 'running' ORDER BY created_at DESC, rowid DESC LIMIT 1", (config_hash,)
        ).fetchone()
        return row["id"] if row else None

    def finish_run(self, run_id: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET status = 'finished', finished_at = ? WHERE id = ?", (now(), run_id))

    def runs(self) -> list[StoredRun]:
        """Every run, oldest first (rowid breaks ties within one second)."""
        return [_run(r) for r in self.db.execute("SELECT * FROM runs ORDER BY created_at, rowid")]

    def finished_run(self, config_hash: str) -> str | None:
        """The latest finished run with this configuration hash (``harness ab`` reuses it)."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE config_hash = ? AND status = 'finished' ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (config_hash,),
        ).fetchone()
        return str(row["id"]) if row else None

    def resolve_run(self, ref: str) -> str:
        """A run id, a unique prefix of one, or 'latest'."""
        if ref == "latest":
            row = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise HarnessError(f"{self.path}: no runs stored yet")
            return str(row["id"])
        rows = [r["id"] for r in self.db.execute("SELECT id FROM runs WHERE id LIKE ?", (ref + "%",))]
        if len(rows) != 1:
            known = [r.id for r in self.runs()][-5:]
            problem = "no run" if not rows else f"{len(rows)} runs"
            raise HarnessError(f"{self.path}: {problem} matching '{ref}'. Recent runs: {', '.join(known) or '(none)'}")
        return str(rows[0])

    def run_config(self, run_id: str) -> dict[str, Any]:
        """The run's configuration snapshot (its spec, tasks, model identities, warnings)."""
        row = self.db.execute("SELECT config_json FROM runs WHERE id = ?", (run_id,)).fetchone()
        return dict(json.loads(row["config_json"]))

    # -- cells and items ----------------------------------------------------------
    def add_cell(self, cell: StoredCell) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cell.run_id, cell.cell_id, cell.task, cell.task_type, cell.prompt, cell.prompt_sha256, cell.shots,
                    cell.selector, cell.model, json.dumps(cell.model_json, sort_keys=True), json.dumps(cell.metrics), cell.n_planned,
                ),
            )

    def cells(self, run_ids: Sequence[str]) -> list[StoredCell]:
        """The runs' cells in the order they were added."""
        rows = self.db.execute(f"SELECT * FROM cells WHERE run_id IN ({_marks(run_ids)}) ORDER BY rowid", list(run_ids))
        return [_cell(r) for r in rows]

    def done_item_ids(self, run_id: str, cell_id: str) -> set[str]:
        rows = self.db.execute("SELECT item_id FROM items WHERE run_id = ? AND cell_id = ?", (run_id, cell_id))
        return {r["item_id"] for r in rows}

    def write_items(self, run_id: str, items: Iterable[ItemRecord], cache_entries: dict[str, Result]) -> None:
        """Items and the cache entries that produced them (recorded as stored by ``run_id``), in one transaction."""
        stamp = now()
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO cache (key, result_json, created_at, run_id) VALUES (?, ?, ?, ?)",
                [(key, json.dumps(result_to_json(result)), stamp, run_id) for key, result in cache_entries.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO items (run_id, cell_id, item_id, position, prompt_json, continuations_json, demo_ids_json, "
                "target_json, response_json, extracted, scores_json, latency_s, n_tokens, cached, cluster) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        run_id, i.cell_id, i.item_id, i.position, json.dumps(i.prompt, ensure_ascii=False),
                        None if i.continuations is None else json.dumps(i.continuations, ensure_ascii=False),
                        json.dumps(i.demo_ids), json.dumps(i.target, ensure_ascii=False), json.dumps(i.response, ensure_ascii=False),
                        i.extracted, json.dumps(i.scores), i.latency_s, i.n_tokens, int(i.cached), i.cluster,
                    )
                    for i in items
                ],
            )

    def update_scores(self, run_id: str, rows: Iterable[tuple[str, str, dict[str, float], str | None]]) -> None:
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET scores_json = ?, extracted = ? WHERE run_id = ? AND cell_id = ? AND item_id = ?",
                [(json.dumps(scores), extracted, run_id, cell, item) for cell, item, scores, extracted in rows],
            )

    def items(self, run_ids: Sequence[str], cell_id: str | None = None) -> list[StoredItem]:
        """The runs' items (only cell ``cell_id``'s when given), ordered by run, cell and position."""
        where = f"run_id IN ({_marks(run_ids)})" + ("" if cell_id is None else " AND cell_id = ?")
        params = [*run_ids] + ([] if cell_id is None else [cell_id])
        rows = self.db.execute(f"SELECT * FROM items WHERE {where} ORDER BY run_id, cell_id, position", params)
        return [_item(r) for r in rows]

    def scores(self, run_ids: Sequence[str]) -> list[ItemScores]:
        """The runs' item scores and clusters, in ``items`` order, without decoding prompts and responses."""
        rows = self.db.execute(
            f"SELECT run_id, cell_id, item_id, scores_json, cluster FROM items WHERE run_id IN ({_marks(run_ids)}) "
            "ORDER BY run_id, cell_id, position",
            list(run_ids),
        )
        return [ItemScores(r["run_id"], r["cell_id"], r["item_id"], json.loads(r["scores_json"]), r["cluster"]) for r in rows]

    # -- calibration --------------------------------------------------------------
    def write_calibration(self, rows: Sequence[CalibrationRow], metric: str) -> None:
        """Calibration rows and, on their items, the score ``metric`` (1.0 when the calibrated choice is the
        target, else 0.0; other scores kept), in one transaction: replaced on a second pass."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO calibration VALUES (?,?,?,?,?,?,?,?)",
                [
                    (r.run_id, r.cell_id, r.item_id, json.dumps(r.content_free), json.dumps(r.p_cf), r.predicted, r.calibrated, r.target)
                    for r in rows
                ],
            )
            self.db.executemany(
                "UPDATE items SET scores_json = json_set(scores_json, '$.' || ?, ?) WHERE run_id = ? AND cell_id = ? AND item_id = ?",
                [(metric, float(r.calibrated == r.target), r.run_id, r.cell_id, r.item_id) for r in rows],
            )

    def calibration(self, run_id: str) -> list[CalibrationRow]:
        """The run's calibration rows, by cell and item id."""
        rows = self.db.execute("SELECT * FROM calibration WHERE run_id = ? ORDER BY cell_id, item_id", (run_id,))
        return [_calibration(r) for r in rows]

    # -- cache --------------------------------------------------------------------
    def cached(self, keys: Sequence[str], origins: Counter[str | None] | None = None) -> dict[str, Result]:
        """The cached results of those keys that have one; ``origins`` (when given) counts the hits
        by the run that stored them (None: stored before runs were recorded)."""
        found: dict[str, Result] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            for row in self.db.execute(f"SELECT key, result_json, run_id FROM cache WHERE key IN ({_marks(chunk)})", chunk):
                found[row["key"]] = result_from_json(json.loads(row["result_json"]))
                if origins is not None:
                    origins[row["run_id"]] += 1
        return found

    def cache_stats(self) -> dict[str, int]:
        row = self.db.execute("SELECT COUNT(*) AS n FROM cache").fetchone()
        return {"entries": int(row["n"])}

    def migrations(self) -> list[str]:
        """The names of the migrations applied to this database, in name order."""
        return [str(r["name"]) for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    def clear_cache(self) -> int:
        with self.transaction():
            return self.db.execute("DELETE FROM cache").rowcount
