"""The results database under hostile conditions: another application's file, read-only storage, a typo'd
path for a read-only verb, several processes opening a fresh file at once. Each is one clean message
(exit 2 from the CLI), and nothing is created or changed where it should not be."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.core.errors import HarnessError
from harness.store import Store
from harness.store.migrations import MIGRATIONS
from tests.helpers import cli, write_task
from tests.store.test_store import _old_database
from tests.tmpfs import read_only_view, tmpfs


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, distance REAL)")
        con.execute("CREATE TABLE users (name TEXT)")
    for read_only in (False, True):
        with pytest.raises(HarnessError, match=r"app\.db is an SQLite database of another application \(tables: runs, users\), not a harness"):
            Store(path, read_only=read_only)
    write_task(tmp_path, rows=3)
    assert cli("run", "--task", tmp_path / "toy", "--model", "scripted:m", "--db", path, "--quiet") == 2
    assert cli("show", "--db", path) == 2
    err = capsys.readouterr().err
    assert err.count("another application") == 2 and "Traceback" not in err and "already exists" not in err
    assert _tables(path) == {"runs", "users"}  # no migrations table, nothing added


def test_another_tools_migrations_table_is_not_taken_for_harnesss(tmp_path: Path) -> None:
    laravel, same_shape = tmp_path / "laravel.db", tmp_path / "same.db"
    with sqlite3.connect(laravel) as con:
        con.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, migration TEXT, batch INTEGER)")
    with sqlite3.connect(same_shape) as con:
        con.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        con.execute("INSERT INTO migrations VALUES ('2014_10_12_create_users_table', 'x')")
    for path in (laravel, same_shape):
        for read_only in (False, True):
            with pytest.raises(HarnessError, match=r"is an SQLite database of another application \(tables: migrations\)"):
                Store(path, read_only=read_only)


def test_garbage_a_newer_harness_and_an_empty_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite at all" * 100)
    for read_only in (False, True):
        with pytest.raises(HarnessError, match="garbage.db: not a usable SQLite database"):
            Store(garbage, read_only=read_only)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    with sqlite3.connect(newer) as con:
        con.execute("INSERT INTO migrations VALUES ('999_from_the_future', 'x')")
    with pytest.raises(HarnessError, match="written by a newer harness .migration 999_from_the_future is unknown here"):
        Store(newer)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(HarnessError, match="empty SQLite file, not a harness results database yet"):
        Store.open_read_only(empty)
    assert Store(empty).migrations() == [name for name, _ in MIGRATIONS]  # a writer makes it one


READ_VERBS = [["show"], ["show", "latest"], ["compare"], ["report", "-o", "{tmp}/r.html"], ["draws"], ["sensitivity"],
              ["export", "-o", "{tmp}/out"], ["plan", "--mde", "0.05", "--pilot", "latest"], ["cache", "stats"], ["rescore", "latest", "--dry-run"]]


@pytest.mark.parametrize("verb", READ_VERBS, ids=lambda v: "-".join(v[:2]))
def test_a_read_only_verb_on_a_missing_database_says_so_and_creates_nothing(
    verb: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "results" / "harness.db"
    assert cli(*[a.format(tmp=tmp_path) for a in verb], "--db", db) == 2
    assert capsys.readouterr().err.startswith(f"error: no database at {db} (no folder {db.parent})")
    assert not db.parent.exists()


def test_a_typo_in_the_path_gets_a_did_you_mean_and_the_api_says_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store(tmp_path / "harness.db").close()
    assert cli("show", "--db", tmp_path / "harnes.db") == 2
    assert f"no database at {tmp_path / 'harnes.db'} (did you mean 'harness.db'?)" in capsys.readouterr().err
    with pytest.raises(HarnessError, match="no database at"):
        harness.load_results(tmp_path / "nope.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harness.db"]


def test_read_only_storage_serves_the_read_verbs_and_refuses_writes_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path, rows=6)
    source = tmp_path / "source"
    assert cli("run", "--task", tmp_path / "toy", "--model", "scripted:m", "--db", source / "h.db", "--quiet") == 0
    _old_database(source / "old.db")  # one that still needs migrations
    with read_only_view(source, tmp_path / "ro") as ro:
        db = ro / "h.db"
        capsys.readouterr()
        for verb in (["show"], ["show", "latest"], ["compare"], ["report", "-o", tmp_path / "r.html"], ["cache", "stats"], ["export", "-o", tmp_path / "out"]):
            assert cli(*verb, "--db", db) == 0, verb
        assert "Traceback" not in capsys.readouterr().err
        assert cli("run", "--task", tmp_path / "toy", "--model", "scripted:m", "--db", db, "--quiet", "--new") == 2
        assert cli("run", "--task", tmp_path / "toy", "--model", "scripted:m", "--db", ro / "missing" / "h.db", "--quiet") == 2
        assert cli("show", "--db", ro / "old.db") == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"error: {db} is read-only here") or err[0].startswith(f"error: cannot open {db}"), err[0]
        assert err[1].startswith(f"error: cannot create the folder {ro / 'missing'} for the results database") and "Read-only" in err[1]
        assert err[2].startswith(f"error: {ro / 'old.db'} was written by an older harness and needs migration 002_cache_run_id")


def test_a_folder_given_as_the_database_is_named_as_such(tmp_path: Path) -> None:
    for read_only in (False, True):
        with pytest.raises(HarnessError, match=f"{tmp_path} is a folder, not a database file"):
            Store(tmp_path, read_only=read_only)


def test_a_read_only_open_of_a_writable_old_database_migrates_it(tmp_path: Path) -> None:
    _old_database(tmp_path / "old.db")
    store = Store.open_read_only(tmp_path / "old.db")
    assert store.migrations() == [name for name, _ in MIGRATIONS] and [r.id for r in store.runs()] == ["old"]


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    from harness.store import ItemRecord

    store = Store(tmp_path / "h.db")
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.write_items("no-such-run", [ItemRecord("c", "i", 0, "q", None, [], 0, [], None, {}, 0.0, 0, False)], {})


def _open(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        Store(path).close()
    except BaseException:  # noqa: BLE001 - reported to the parent
        failures.put(traceback.format_exc()[-600:])


def test_several_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures = context.Queue()
    for attempt in range(30):
        barrier = context.Barrier(4)
        processes = [context.Process(target=_open, args=(str(tmp_path / f"{attempt}.db"), barrier, failures)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [p.exitcode for p in processes] == [0, 0, 0, 0]
        assert failures.empty(), failures.get()
        assert Store(tmp_path / f"{attempt}.db").migrations() == [name for name, _ in MIGRATIONS]


def test_a_full_disk_at_the_first_open_is_a_clean_error_and_leaves_no_empty_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "size=64k") as full:
        with open(full / "filler", "wb") as handle:  # take every block
            try:
                handle.write(b"\0" * 1_000_000)
            except OSError:
                pass
        with pytest.raises(HarnessError, match=f"disk full while writing {full / 'h.db'}"):
            Store(full / "h.db")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
