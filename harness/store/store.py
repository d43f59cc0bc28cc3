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
import os
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, did_you_mean
from harness.requests import Result, result_from_json, result_to_json
from harness.store.migrations import MIGRATIONS, OPTIONAL_ON_READ
from harness.store.records import (
    CalibrationRow,
    ItemAnswer,
    ItemCost,
    ItemLedger,
    ItemRecord,
    ItemScores,
    RaceCell,
    RunClaim,
    StoredCell,
    StoredDigest,
    StoredItem,
    StoredLedger,
    StoredPrices,
    StoredRace,
    StoredRun,
)

DEFAULT_DB = Path("results") / "harness.db"
OWNER_STALE_S = 30 * 60  # a run owned on another host, not written to for this long, is taken to be abandoned


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run(row: sqlite3.Row) -> StoredRun:
    return StoredRun(
        id=row["id"], created_at=row["created_at"], finished_at=row["finished_at"], status=row["status"],
        config_hash=row["config_hash"], config=json.loads(row["config_json"]), versions=json.loads(row["versions_json"]),
        seed=row["seed"], error=row["error"], owner=json.loads(row["owner_json"]) if row["owner_json"] else None,
    )


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), 'zombie' for one that ended; None when unknown.

    Recorded with a run's owner, so a pid reused by an unrelated process is not taken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after 'pid (comm) ': state is field 3, starttime field 22
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def process_owner() -> dict[str, Any]:
    """The current process as a running run's owner: pid, host, process start and when it took the run."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()), "since": now()}


def owner_alive(owner: dict[str, Any] | None, seen_at: str | None) -> bool:
    """Whether a running run's owner may still be evaluating it (else the run is resumable).

    On this host: its pid lives and started when the owner did. This process: no (``run_experiment``
    is synchronous, so a run it took earlier ended). Another host: written to in the last ``OWNER_STALE_S``."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        seen = seen_at or owner.get("since")
        return seen is not None and (datetime.now(timezone.utc) - datetime.fromisoformat(seen)).total_seconds() < OWNER_STALE_S
    pid = int(owner.get("pid", 0))
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    start = _process_start(pid)
    return start != "zombie" and (start is None or owner.get("start") is None or start == owner.get("start"))


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


def _switch_to_wal(db: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """PRAGMA journal_mode=WAL, retried while another process switches the same fresh file: that pragma's
    'database is locked' skips the busy timeout, so several processes opening a new database at once would fail."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def damaged_database(exc: BaseException, path: Path | str | None) -> HarnessError | None:
    """The clean error for a database found damaged while reading it (a copy cut short: pages missing), None for any other error."""
    text = str(exc)
    if not isinstance(exc, sqlite3.DatabaseError) or not any(sign in text for sign in ("malformed", "not a database", "corrupt")):
        return None
    db = path or "the results database"
    return HarnessError(f"{db} is damaged ({text}), e.g. cut short by a copy or a full disk: restore it from a backup or pass --db "
                        f"a new file (`sqlite3 {db} .recover` may save what is left)")


def statements(sql: str) -> list[str]:
    """A migration's SQL cut into whole statements (a trigger's body keeps its own semicolons)."""
    out, pending = [], ""
    for part in sql.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class Store:
    """The results database; opening it applies the migrations it has not seen yet.

    ``read_only`` (``Store.open_read_only``) is for the verbs that only read: it never creates
    the file ("no database at PATH" instead), never switches the journal mode and works on
    read-only storage. A database that still needs a migration is migrated first when it is
    writable, and refused with a clear message when it is not. ``never_write`` (``harness view``)
    does not migrate either: a database that lacks only what it can do without (``OPTIONAL_ON_READ``: indices, digests) is read without
    them (``pending`` names them; the queries that would use them fall back), one that lacks a
    table or column is refused with how to upgrade it.
    """

    def __init__(self, path: Path | str = DEFAULT_DB, *, read_only: bool = False, never_write: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only or never_write
        self.never_write = never_write
        self.pending: list[str] = []
        self.db = self._connect_read_only() if self.read_only else self._connect()
        if self.read_only:
            self._check_read_only()
        else:
            self._migrate()

    @classmethod
    def open_read_only(cls, path: Path | str = DEFAULT_DB, *, never_write: bool = False) -> Store:
        """The database at ``path`` for reading (see the class docstring): show, compare, report, export...;
        ``never_write``: not even a migration (the viewer)."""
        return cls(path, read_only=True, never_write=never_write)

    # -- opening --------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise HarnessError(f"{self.path} is a folder, not a database file: give a file path such as {self.path / 'harness.db'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            why = f"{blocking} is a file, not a folder" if blocking is not None else exc.strerror
            raise HarnessError(f"cannot create the folder {self.path.parent} for the results database {self.path}: {why}") from None
        existed = self.path.exists()
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.row_factory = sqlite3.Row
            self.db = db
            try:  # another application's file or a newer harness's is refused before anything is written to it (WAL changes the header)
                self._applied()
            except HarnessError:
                db.close()
                raise
            _switch_to_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA recursive_triggers=ON")  # INSERT OR REPLACE's delete of the old row fires the search index's trigger
        except sqlite3.DatabaseError as exc:
            if not existed and self.path.is_file() and self.path.stat().st_size == 0:
                self.path.unlink()  # no empty file left behind by an open that failed (a full disk)
            raise self._storage_error(exc) or HarnessError(f"{self.path}: not a usable SQLite database ({exc})") from None
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise HarnessError(f"{self.path} is a folder, not a database file: give a file path such as {self.path / 'harness.db'}")
        if not self.path.is_file():
            raise HarnessError(f"no database at {self.path}{self._nearby()}: `harness run --db {self.path}` writes one; "
                               "pass --db PATH (or set HARNESS_DB) to read another")
        uri = self.path.resolve().as_uri()
        for query in ("?mode=ro", "?mode=ro&immutable=1"):  # immutable: WAL files cannot be made on read-only storage
            try:
                db = sqlite3.connect(uri + query, uri=True, timeout=60, isolation_level=None)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA foreign_keys=ON")
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.DatabaseError as exc:
                error = exc
                if os.access(self.path.parent, os.W_OK):  # the journal files could be made: immutable would not help
                    break
        raise self._storage_error(error) or HarnessError(f"{self.path}: not a usable SQLite database ({error})") from None

    def _nearby(self) -> str:
        """' (did you mean ...?)' from the databases next to a mistyped path."""
        try:
            names = [p.name for p in self.path.parent.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3")][:200]
        except OSError:
            return f" (no folder {self.path.parent})"
        hint = did_you_mean(self.path.name, names).strip()
        return f" ({hint[0].lower()}{hint[1:-1]}?)" if hint else ""

    def _tables(self) -> set[str]:
        return {str(r["name"]) for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}

    def _applied(self) -> set[str] | None:
        """The migrations recorded in the file, None when it has no migrations table; refuses another application's file."""
        tables = self._tables()
        columns = {str(r["name"]) for r in self.db.execute("PRAGMA table_info(migrations)")} if "migrations" in tables else set()
        if columns == {"name", "applied_at"}:
            done = {str(row["name"]) for row in self.db.execute("SELECT name FROM migrations")}
            if MIGRATIONS[0][0] not in done and (done or tables - {"migrations"}):  # another tool's table of the same name and shape
                raise self._foreign(tables)
            unknown = sorted(done - {name for name, _ in MIGRATIONS})
            if unknown:
                names = ", ".join(unknown[:3])
                raise HarnessError(f"{self.path} was written by a newer harness (migration {names} is unknown here): upgrade harness to read it")
            return done
        if tables:
            raise self._foreign(tables)
        return None

    def _foreign(self, tables: set[str]) -> HarnessError:
        shown = ", ".join(sorted(tables)[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        return HarnessError(f"{self.path} is an SQLite database of another application (tables: {shown}), not a harness results database "
                           "(it has no harness 'migrations' table): pass --db a new file or a harness database")

    def _migrate(self) -> None:
        applied = self._applied()
        if applied is not None and all(name in applied for name, _ in MIGRATIONS):
            return  # the usual case: nothing to do, and no write lock taken
        with self.transaction():  # read and apply in one write transaction: processes opening a fresh file at once take turns
            applied = self._applied()
            if applied is None:
                self.db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                applied = set()
            for name, sql in MIGRATIONS:
                if name not in applied:
                    for statement in statements(sql):
                        self._apply(name, statement)
                    self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    def _apply(self, migration: str, statement: str) -> None:
        """One statement of a migration; one that fails (a table an earlier migration made is missing) is a damaged file."""
        try:
            self.db.execute(statement)
        except sqlite3.OperationalError as exc:
            if self._storage_error(exc) is not None:  # full disk, read-only, locked: said as such by ``transaction``
                raise
            raise HarnessError(f"{self.path}: cannot apply migration {migration} ({exc}): the file records harness migrations but lacks "
                               "what they made, so it is damaged or not a harness results database; pass --db a new file") from None

    def _check_read_only(self) -> None:
        applied = self._applied()
        if applied is None:
            self.db.close()
            raise HarnessError(f"{self.path} is an empty SQLite file, not a harness results database yet: `harness run --db {self.path}` fills it")
        pending = [name for name, _ in MIGRATIONS if name not in applied]
        if not pending:
            return
        if self.never_write and set(pending) <= OPTIONAL_ON_READ:
            self.pending = pending
            return
        self.db.close()
        if self.never_write:
            raise HarnessError(f"{self.path} was written by an older harness and needs migration {', '.join(pending)}; this command never "
                               f"writes the database: upgrade it once with `harness show --db {self.path}` (or any command that writes)")
        if os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
            self.read_only = False  # an older database that can be written: migrate it as any other open would
            self.db = self._connect()
            self._migrate()
            return
        raise HarnessError(f"{self.path} was written by an older harness and needs migration {', '.join(pending)}, which cannot be "
                           "applied here (the file is read-only): open it once where it is writable (e.g. `harness show --db` on a copy)")

    def _storage_error(self, exc: sqlite3.Error) -> HarnessError | None:
        """A clean message for the storage problems SQLite reports (full disk, read-only file, lock timeout); None for others."""
        name, text = str(getattr(exc, "sqlite_errorname", "") or ""), str(exc)
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return HarnessError(f"disk full while writing {self.path} ({text}): free some space and run the same command again "
                                "(everything stored so far is kept and the run resumes)")
        if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
            return HarnessError(f"I/O error while writing {self.path} ({text}): is the disk full or the storage gone?")
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return HarnessError(f"{self.path} is read-only here ({text}): this command writes to the results database; "
                                "pass --db a writable file")
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return HarnessError(f"cannot open {self.path} ({text}): check that the path is a file in a folder this user can write")
        if name.startswith("SQLITE_BUSY") or "locked" in text:
            return HarnessError(f"{self.path} is locked by another process ({text}): it held the database for over 60 s")
        if name.startswith("SQLITE_CORRUPT") or "malformed" in text:  # a SQLite file with pages lost: a harness database cut short?
            return damaged_database(exc, self.path)
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            return HarnessError(f"{self.path}: not a usable SQLite database ({text})")
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE): all of it or nothing; storage problems become a HarnessError."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._storage_error(exc) or exc from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            mapped = self._storage_error(exc) if isinstance(exc, sqlite3.OperationalError) else None
            if mapped is not None:
                raise mapped from None
            raise

    def close(self) -> None:
        self.db.close()

    # -- runs ---------------------------------------------------------------------
    def create_run(self, run_id: str, config_hash: str, config: dict[str, Any], versions: dict[str, Any], seed: int) -> None:
        """A new run at ``running``, owned by this process."""
        with self.transaction():
            self._insert_run(run_id, config_hash, config, versions, seed)

    def _insert_run(self, run_id: str, config_hash: str, config: dict[str, Any], versions: dict[str, Any], seed: int) -> None:
        stamp = now()
        self.db.execute(
            "INSERT INTO runs (id, created_at, finished_at, status, config_hash, config_json, versions_json, seed, error, owner_json, "
            "owner_seen_at) VALUES (?, ?, NULL, 'running', ?, ?, ?, ?, NULL, ?, ?)",
            (run_id, stamp, config_hash, json.dumps(config, sort_keys=True), json.dumps(versions, sort_keys=True), seed,
             json.dumps(process_owner()), stamp),
        )

    def claim_run(self, run_id: str, config_hash: str, config: dict[str, Any], versions: dict[str, Any], seed: int, *,
                  new: bool = False) -> RunClaim:
        """The run to evaluate this configuration into, in one write transaction (two processes cannot both take one).

        Unless ``new``: the latest unfinished run with ``config_hash`` (interrupted, or failed: its stored items are
        valid), taken over by this process; refused while another live process evaluates it. Else a new run ``run_id``.
        """
        with self.transaction():
            row = None if new else self.db.execute(
                "SELECT id, status, error, owner_json, owner_seen_at FROM runs WHERE config_hash = ? AND status IN ('running', 'failed') "
                "ORDER BY created_at DESC, rowid DESC LIMIT 1", (config_hash,)).fetchone()
            if row is None:
                self._insert_run(run_id, config_hash, config, versions, seed)
                return RunClaim(run_id, None)
            owner = json.loads(row["owner_json"]) if row["owner_json"] else None
            if row["status"] == "running" and owner_alive(owner, row["owner_seen_at"]):
                assert owner is not None
                raise HarnessError(
                    f"run {row['id']} with this configuration is being evaluated by process {owner.get('pid')} on {owner.get('host')} "
                    f"(since {owner.get('since')}): wait for it to finish (this command then reuses its answers from the response cache), "
                    "stop it (its run then resumes here), or pass --new for a separate run")
            self.db.execute("UPDATE runs SET status = 'running', error = NULL, owner_json = ?, owner_seen_at = ? WHERE id = ?",
                            (json.dumps(process_owner()), now(), row["id"]))
            return RunClaim(str(row["id"]), str(row["status"]), row["error"])

    # -- digests (migration 007) ---------------------------------------------------------
    def run_revision(self, run_id: str) -> int | None:
        """The run's revision (raised by every write to its items, cells or calibration rows); None for no such run, or a
        database read without migration 007."""
        if "007_run_digests" in self.pending:
            return None
        row = self.db.execute("SELECT revision FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else int(row[0])

    def write_digest(self, digest: StoredDigest) -> bool:
        """Keep ``digest`` (replacing the run's earlier one of the same kind and key) if the run is still at its revision;
        False when the run changed since it was computed (nothing is written then)."""
        with self.transaction():
            written = self.db.execute(
                "INSERT OR REPLACE INTO digests (run_id, kind, key, revision, producer, created_at, body) "
                "SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND revision = ?)",
                (digest.run_id, digest.kind, digest.key, digest.revision, digest.producer, digest.created_at, digest.body,
                 digest.run_id, digest.revision)).rowcount
        return bool(written)

    def digest(self, run_id: str, kind: str, key: str, producer: str) -> StoredDigest | None:
        """The run's digest of this kind and key if it was computed by ``producer`` at the run's current revision, else None."""
        if "007_run_digests" in self.pending:
            return None
        row = self.db.execute(
            "SELECT d.* FROM digests d JOIN runs r ON r.id = d.run_id AND r.revision = d.revision "
            "WHERE d.run_id = ? AND d.kind = ? AND d.key = ? AND d.producer = ?", (run_id, kind, key, producer)).fetchone()
        if row is None:
            return None
        return StoredDigest(row["run_id"], row["kind"], row["key"], int(row["revision"]), row["producer"], row["created_at"], bytes(row["body"]))

    def item_count(self, run_id: str) -> int:
        """The run's stored item rows: migration 007's counter (no count over a big run's rows), else counted."""
        if "007_run_digests" in self.pending:
            return int(self.db.execute("SELECT COUNT(*) FROM items WHERE run_id = ?", (run_id,)).fetchone()[0])
        row = self.db.execute("SELECT n_items FROM runs WHERE id = ?", (run_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def unfinished_run(self, config_hash: str) -> str | None:
        """The latest run with this configuration that did not finish (interrupted or failed): the one ``claim_run`` resumes."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE config_hash = ? AND status IN ('running', 'failed') ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (config_hash,),
        ).fetchone()
        return row["id"] if row else None

    def finish_run(self, run_id: str) -> None:
        """Mark the run finished (the runner exports its items first, so a finished run always has its items.jsonl)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET status = 'finished', finished_at = ?, error = NULL, owner_json = NULL WHERE id = ?", (now(), run_id))

    def fail_run(self, run_id: str, reason: str) -> None:
        """Mark the run failed with its reason (bounded); its stored items stay, and an identical command resumes it."""
        reason = reason if len(reason) <= 2000 else reason[:2000] + "..."
        with self.transaction():
            self.db.execute("UPDATE runs SET status = 'failed', error = ?, owner_json = NULL WHERE id = ?", (reason, run_id))

    def release_run(self, run_id: str) -> None:
        """Leave the run resumable at ``running`` with no owner (an interrupted run: Ctrl-C is not a failure)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET owner_json = NULL WHERE id = ? AND status = 'running'", (run_id,))

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
            self.db.execute("UPDATE runs SET owner_seen_at = ? WHERE id = ? AND owner_json IS NOT NULL", (stamp, run_id))
            self.db.executemany(
                "INSERT OR REPLACE INTO cache (key, result_json, created_at, run_id) VALUES (?, ?, ?, ?)",
                [(key, json.dumps(result_to_json(result)), stamp, run_id) for key, result in cache_entries.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO items (run_id, cell_id, item_id, position, prompt_json, continuations_json, demo_ids_json, "
                "target_json, response_json, extracted, scores_json, latency_s, n_tokens, cached, cluster, n_requests, requests_sent, "
                "tokens_in, tokens_out, sent_tokens_in, sent_tokens_out) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        run_id, i.cell_id, i.item_id, i.position, json.dumps(i.prompt, ensure_ascii=False),
                        None if i.continuations is None else json.dumps(i.continuations, ensure_ascii=False),
                        json.dumps(i.demo_ids), json.dumps(i.target, ensure_ascii=False), json.dumps(i.response, ensure_ascii=False),
                        i.extracted, json.dumps(i.scores), i.latency_s, i.n_tokens, int(i.cached), i.cluster, len(i.response),
                        i.requests_sent, i.tokens_in, i.tokens_out, i.sent_tokens_in, i.sent_tokens_out,
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
        decoded: dict[str, dict[str, float]] = {}  # a run's scores_json texts repeat (0/1 metrics): each distinct one is decoded once

        def scores(text: str) -> dict[str, float]:
            found = decoded.get(text)
            if found is None:
                found = json.loads(text)
                if len(decoded) < 100_000:
                    decoded[text] = found
            return dict(found)  # every row its own dict, as json.loads gives

        return [ItemScores(r[0], r[1], r[2], scores(r[3]), r[4]) for r in rows]

    def answers(self, run_ids: Sequence[str]) -> list[ItemAnswer]:
        """The runs' items' answers (choices, log-probs, extracted text), in ``items`` order, without their other columns."""
        rows = self.db.execute(
            f"SELECT run_id, cell_id, item_id, continuations_json, response_json, extracted FROM items WHERE run_id IN ({_marks(run_ids)}) "
            "ORDER BY run_id, cell_id, position",
            list(run_ids),
        )
        nan = float("nan")
        choices: dict[str, tuple[str, ...]] = {}  # the choices repeat from item to item (" A" .. " D"): each text decoded once

        def continuations(text: str | None) -> tuple[str, ...] | None:
            if not text:
                return None
            found = choices.get(text)
            if found is None:
                found = tuple(json.loads(text))
                if len(choices) < 100_000:
                    choices[text] = found
            return found

        return [ItemAnswer(r[0], r[1], r[2], continuations(r[3]), tuple(float(x.get("logprob", nan)) for x in json.loads(r[4])), r[5])
                for r in rows]

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

    # -- the cost ledger (migration 009) -------------------------------------------------
    def ledgers(self, run_ids: Sequence[str]) -> list[StoredLedger]:
        """Each cell's ledger, summed over its stored items, by run and cell (cells with no item have none); a database read
        without migration 009 has no recorded or metered item."""
        if not run_ids:
            return []
        requests = "json_array_length(response_json)"
        if "009_cost_ledger" in self.pending:
            columns = f"COUNT(*), SUM({requests}), COUNT(*), 0, 0, COUNT(*), 0, 0, 0, 0"
        else:
            requests = f"COALESCE(n_requests, {requests})"
            columns = (f"COUNT(*), SUM({requests}), SUM(requests_sent IS NULL), TOTAL(requests_sent), "
                       f"TOTAL(CASE WHEN requests_sent IS NOT NULL THEN {requests} END), SUM(tokens_in IS NULL OR tokens_out IS NULL), "
                       "TOTAL(tokens_in), TOTAL(tokens_out), TOTAL(sent_tokens_in), TOTAL(sent_tokens_out)")
        rows = self.db.execute(f"SELECT run_id, cell_id, {columns} FROM items WHERE run_id IN ({_marks(run_ids)}) "
                               "GROUP BY run_id, cell_id ORDER BY run_id, cell_id", list(run_ids))
        return [StoredLedger(r[0], r[1], *(int(v or 0) for v in tuple(r)[2:])) for r in rows]

    def item_ledgers(self, run_ids: Sequence[str]) -> list[ItemLedger]:
        """Every stored item's requests and tokens (None: not metered), by run, cell and position."""
        if not run_ids:
            return []
        if "009_cost_ledger" in self.pending:
            columns = "json_array_length(response_json), NULL, NULL"
        else:
            columns = "COALESCE(n_requests, json_array_length(response_json)), tokens_in, tokens_out"
        rows = self.db.execute(f"SELECT run_id, cell_id, item_id, {columns} FROM items WHERE run_id IN ({_marks(run_ids)}) "
                               "ORDER BY run_id, cell_id, position", list(run_ids))
        return [ItemLedger(r[0], r[1], r[2], int(r[3] or 0), None if r[4] is None or r[5] is None else int(r[4]),
                           None if r[4] is None or r[5] is None else int(r[5])) for r in rows]

    def write_prices(self, run_id: str, prices: dict[str, dict[str, Any]]) -> None:
        """The price table the run is evaluated with (replacing an earlier one: a resumed run is priced as last given)."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO run_prices (run_id, prices_json, updated_at) VALUES (?, ?, ?)",
                            (run_id, json.dumps(prices, sort_keys=True), now()))

    def prices(self, run_ids: Sequence[str]) -> list[StoredPrices]:
        """The price tables of those runs that have one (none in a database read without migration 009)."""
        if "009_cost_ledger" in self.pending or not run_ids:
            return []
        rows = self.db.execute(f"SELECT run_id, prices_json, updated_at FROM run_prices WHERE run_id IN ({_marks(run_ids)}) ORDER BY run_id",
                               list(run_ids))
        return [StoredPrices(r[0], json.loads(r[1]), r[2]) for r in rows]

    # -- races (migration 008) ------------------------------------------------------
    def item_costs(self, run_id: str, cell_id: str) -> list[ItemCost]:
        """The cell's stored items' scores, request counts (stored results) and tokens, in split order."""
        rows = self.db.execute(
            "SELECT item_id, scores_json, json_array_length(response_json), n_tokens FROM items WHERE run_id = ? AND cell_id = ? ORDER BY position",
            (run_id, cell_id))
        return [ItemCost(r[0], json.loads(r[1]), int(r[2] or 0), int(r[3])) for r in rows]

    def write_race(self, race: StoredRace) -> None:
        """A task's race as of its latest round, replacing what was stored for it (a resumed run replays its rounds)."""
        state = {"higher_is_better": race.higher_is_better, "bounds": list(race.bounds), "worst": race.worst, "alpha": race.alpha,
                 "pair_alpha": race.pair_alpha, "margin": race.margin, "round_items": race.round_items, "budget": race.budget,
                 "population": race.population, "seed": race.seed, "rounds": race.rounds, "evaluations": race.evaluations,
                 "requests": race.requests, "tokens": race.tokens, "guarantee": race.guarantee, "method": race.method}

        def real(value: float | None) -> float | None:
            return None if value is None or value != value else float(value)

        with self.transaction():
            self.db.execute("DELETE FROM race_cells WHERE run_id = ? AND task = ?", (race.run_id, race.task))
            self.db.execute("INSERT OR REPLACE INTO races (run_id, task, metric, reason, state_json, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (race.run_id, race.task, race.metric, race.reason, json.dumps(state, sort_keys=True), now()))
            self.db.executemany(
                "INSERT INTO race_cells (run_id, task, cell_id, status, round, items, mean, beaten_by, diff_low, diff_high, reason) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(race.run_id, race.task, c.cell_id, c.status, c.round, c.items, real(c.mean), c.beaten_by,
                  real(c.difference[0]) if c.difference else None, real(c.difference[1]) if c.difference else None, c.reason)
                 for c in race.cells])

    def races(self, run_ids: Sequence[str]) -> list[StoredRace]:
        """The runs' races (``--until-decided`` runs; none for other runs, or a database read without migration 008), in the order written."""
        if "008_race_outcomes" in self.pending or not run_ids:
            return []
        cells: dict[tuple[str, str], list[RaceCell]] = {}
        for r in self.db.execute(f"SELECT * FROM race_cells WHERE run_id IN ({_marks(run_ids)}) ORDER BY rowid", list(run_ids)):
            difference = None if r["diff_low"] is None else (float(r["diff_low"]), float(r["diff_high"]))
            cells.setdefault((r["run_id"], r["task"]), []).append(RaceCell(
                r["cell_id"], r["status"], int(r["round"]), int(r["items"]), float("nan") if r["mean"] is None else float(r["mean"]),
                r["beaten_by"], difference, r["reason"]))
        out = []
        for r in self.db.execute(f"SELECT * FROM races WHERE run_id IN ({_marks(run_ids)}) ORDER BY rowid", list(run_ids)):
            st = json.loads(r["state_json"])
            out.append(StoredRace(
                run_id=r["run_id"], task=r["task"], metric=r["metric"], higher_is_better=bool(st["higher_is_better"]),
                bounds=(float(st["bounds"][0]), float(st["bounds"][1])), worst=float(st["worst"]), alpha=float(st["alpha"]),
                pair_alpha=float(st["pair_alpha"]), margin=st["margin"], round_items=int(st["round_items"]), budget=dict(st["budget"]),
                population=int(st["population"]), seed=int(st["seed"]), reason=r["reason"], rounds=int(st["rounds"]),
                evaluations=int(st["evaluations"]), requests=int(st["requests"]), tokens=int(st["tokens"]), guarantee=st["guarantee"],
                method=st["method"], cells=tuple(cells.get((r["run_id"], r["task"]), [])), updated_at=r["updated_at"]))
        return out

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


# the row decoders under public names, for the store's other query modules (harness/store/browse.py: the viewer's pages)
run_from_row, cell_from_row, item_from_row, placeholders = _run, _cell, _item, _marks
