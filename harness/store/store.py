"""SQLite storage: runs, cells, items and the response cache, with named migrations.

One database file (default ``results/harness.db``) holds everything, so a comparison can
pair items across runs and a repeated run is served from the cache. Every batch of items is
written in one transaction together with its cache entries: a run killed at any moment
leaves whole items or nothing, and resuming re-queries only what is missing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.requests import Result, result_from_json, result_to_json

DEFAULT_DB = Path("results") / "harness.db"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,             -- running | finished
            config_hash TEXT NOT NULL,
            config_json TEXT NOT NULL,
            versions_json TEXT NOT NULL,
            seed INTEGER NOT NULL
        );
        CREATE INDEX runs_by_config ON runs(config_hash, status);
        CREATE TABLE cells (
            run_id TEXT NOT NULL REFERENCES runs(id),
            cell_id TEXT NOT NULL,
            task TEXT NOT NULL,
            task_type TEXT NOT NULL,
            prompt TEXT NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            shots INTEGER NOT NULL,
            selector TEXT NOT NULL,
            model TEXT NOT NULL,
            model_json TEXT NOT NULL,          -- backend identity + description, no secrets
            metrics_json TEXT NOT NULL,        -- metric names, main metric first
            n_planned INTEGER NOT NULL,
            PRIMARY KEY (run_id, cell_id)
        );
        CREATE TABLE items (
            run_id TEXT NOT NULL,
            cell_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            position INTEGER NOT NULL,         -- order in the evaluated split
            prompt_json TEXT NOT NULL,
            continuations_json TEXT,
            demo_ids_json TEXT NOT NULL,
            target_json TEXT NOT NULL,
            response_json TEXT NOT NULL,       -- raw backend results
            extracted TEXT,
            scores_json TEXT NOT NULL,
            latency_s REAL NOT NULL,
            n_tokens INTEGER NOT NULL,
            cached INTEGER NOT NULL,
            PRIMARY KEY (run_id, cell_id, item_id),
            FOREIGN KEY (run_id, cell_id) REFERENCES cells(run_id, cell_id)
        );
        CREATE TABLE cache (
            key TEXT PRIMARY KEY,              -- sha256(backend identity + request)
            result_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """,
    ),
    (
        # which run first stored each cache entry, so a served-from-cache run can name it (NULL: stored before this)
        "002_cache_run_id",
        "ALTER TABLE cache ADD COLUMN run_id TEXT",
    ),
    (
        # the item's cluster (task.yaml 'cluster:', e.g. its passage): CIs and paired tests resample clusters; NULL = none declared
        "003_item_cluster",
        "ALTER TABLE items ADD COLUMN cluster TEXT",
    ),
]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CellRecord:
    run_id: str
    cell_id: str
    task: str
    task_type: str
    prompt: str
    prompt_sha256: str
    shots: int
    selector: str
    model: str
    model_json: dict[str, Any]
    metrics: list[str]
    n_planned: int


@dataclass(frozen=True)
class ItemRecord:
    cell_id: str
    item_id: str
    position: int
    prompt: Any
    continuations: list[str] | None
    demo_ids: list[str]
    target: Any
    response: list[dict[str, Any]]
    extracted: str | None
    scores: dict[str, float]
    latency_s: float
    n_tokens: int
    cached: bool
    cluster: str | None = None  # the task's 'cluster:' value for this item (None when the task declares none)


class Store:
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

    def runs(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM runs ORDER BY created_at, rowid"))

    def resolve_run(self, ref: str) -> str:
        """A run id, a unique prefix of one, or 'latest'."""
        if ref == "latest":
            row = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise HarnessError(f"{self.path}: no runs stored yet")
            return str(row["id"])
        rows = [r["id"] for r in self.db.execute("SELECT id FROM runs WHERE id LIKE ?", (ref + "%",))]
        if len(rows) != 1:
            known = [r["id"] for r in self.runs()][-5:]
            problem = "no run" if not rows else f"{len(rows)} runs"
            raise HarnessError(f"{self.path}: {problem} matching '{ref}'. Recent runs: {', '.join(known) or '(none)'}")
        return str(rows[0])

    def run_config(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT config_json FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row["config_json"])

    # -- cells and items ----------------------------------------------------------
    def add_cell(self, cell: CellRecord) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cell.run_id, cell.cell_id, cell.task, cell.task_type, cell.prompt, cell.prompt_sha256, cell.shots,
                    cell.selector, cell.model, json.dumps(cell.model_json, sort_keys=True), json.dumps(cell.metrics), cell.n_planned,
                ),
            )

    def cells(self, run_ids: Sequence[str]) -> list[CellRecord]:
        marks = ",".join("?" * len(run_ids))
        rows = self.db.execute(f"SELECT * FROM cells WHERE run_id IN ({marks}) ORDER BY rowid", list(run_ids))
        return [
            CellRecord(
                run_id=r["run_id"], cell_id=r["cell_id"], task=r["task"], task_type=r["task_type"], prompt=r["prompt"],
                prompt_sha256=r["prompt_sha256"], shots=r["shots"], selector=r["selector"], model=r["model"],
                model_json=json.loads(r["model_json"]), metrics=json.loads(r["metrics_json"]), n_planned=r["n_planned"],
            )
            for r in rows
        ]

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

    def items(self, run_ids: Sequence[str]) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(run_ids))
        return list(
            self.db.execute(
                f"SELECT * FROM items WHERE run_id IN ({marks}) ORDER BY run_id, cell_id, position", list(run_ids)
            )
        )

    # -- cache --------------------------------------------------------------------
    def cached(self, keys: Sequence[str], origins: Counter[str | None] | None = None) -> dict[str, Result]:
        """The cached results of those keys that have one; ``origins`` (when given) counts the hits
        by the run that stored them (None: stored before runs were recorded)."""
        found: dict[str, Result] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT key, result_json, run_id FROM cache WHERE key IN ({marks})", chunk):
                found[row["key"]] = result_from_json(json.loads(row["result_json"]))
                if origins is not None:
                    origins[row["run_id"]] += 1
        return found

    def cache_stats(self) -> dict[str, int]:
        row = self.db.execute("SELECT COUNT(*) AS n FROM cache").fetchone()
        return {"entries": int(row["n"])}

    def clear_cache(self) -> int:
        with self.transaction():
            return self.db.execute("DELETE FROM cache").rowcount
