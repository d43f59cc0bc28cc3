"""A run's lifecycle under hostile conditions, each compared with a clean run of the same command.

Real `harness run` processes are SIGKILLed at several moments (tests/plugins/lifecycle_hooks.py),
run out of disk space or inodes on a small tmpfs, and started twice at once on one database; the
same command then completes the run, and the stored items must equal a clean run's: nothing lost,
nothing duplicated, every item evaluated once where the answers were committed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.store.store import Store
from tests.helpers import cli, write_task
from tests.tmpfs import remount, tmpfs

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "plugins"
sys.path.insert(0, str(PLUGINS))
import lifecycle_hooks  # noqa: E402  registers 'logscripted' in this process too

ROWS = 150  # three item chunks of 64, 64 and 22 (3 choices each)
MAIN = "import lifecycle_hooks, sys; from harness.cli.app import main; sys.exit(main(sys.argv[1:]))"


def _args(task: Path, db: Path) -> list[str]:
    return ["run", "--task", str(task), "--model", "logscripted:m", "--db", str(db), "--quiet"]


def _process(task: Path, db: Path, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": f"{PLUGINS}{os.pathsep}{ROOT}", **env}
    return subprocess.Popen([sys.executable, "-c", MAIN, *_args(task, db)], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    store = Store.open_read_only(db)
    try:
        return sorted((i.cell_id, i.item_id, i.position, json.dumps(i.prompt), i.demo_ids, json.dumps(i.target), json.dumps(i.response),
                       i.extracted, json.dumps(i.scores, sort_keys=True), i.latency_s, i.n_tokens, i.cached) for i in store.items([run_id]))
    finally:
        store.close()


def _requests(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task(tmp_path_factory.mktemp("task"), rows=ROWS)


@pytest.fixture(scope="module")
def clean(task: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The stored items of an undisturbed run of the same command."""
    db = tmp_path_factory.mktemp("clean") / "h.db"
    assert cli(*_args(task, db)) == 0
    (run,) = Store.open_read_only(db).runs()
    return _rows(db, run.id)


def _check_completed(db: Path, clean: list[tuple[Any, ...]]) -> str:
    """One finished run equal to the clean one, its items.jsonl complete, no temp files, normal permissions."""
    store = Store.open_read_only(db)
    (run,) = store.runs()  # resumed, never duplicated
    assert (run.status, run.error, run.owner) == ("finished", None, None)
    assert _rows(db, run.id) == clean
    folder = db.parent / run.id
    lines = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    assert len(lines) == ROWS and {line["run_id"] for line in lines} == {run.id}
    assert sorted((line["cell_id"], line["item_id"]) for line in lines) == [(r[0], r[1]) for r in clean]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "items.jsonl"]  # no hidden temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "items.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    return run.id


@pytest.mark.parametrize("moment", ["claimed", "write:1", "write:2", "export:40", "finish"])
def test_sigkill_at_each_moment_then_the_same_command_completes_the_same_run(
    moment: str, task: Path, clean: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, log = tmp_path / "h.db", tmp_path / "requests.log"
    process = _process(task, db, HARNESS_TEST_KILL=moment, HARNESS_TEST_REQUEST_LOG=str(log))
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err
    store = Store.open_read_only(db)
    (killed,) = store.runs()
    assert killed.status == "running" and killed.owner is not None and killed.owner["pid"] == process.pid
    stored = store.item_count(killed.id)
    assert stored == {"claimed": 0, "write:1": 0, "write:2": 64}.get(moment, ROWS)  # a killed transaction stores nothing
    folder = db.parent / killed.id
    if moment == "export:40":  # the killed export left its hidden temp file and no items.jsonl
        assert not (folder / "items.jsonl").exists() and list(folder.glob(".items.jsonl.*.tmp"))
    if moment == "finish":  # the export comes first: a run killed before it is finished already has its items.jsonl
        assert len((folder / "items.jsonl").read_text().splitlines()) == ROWS
    store.close()

    log.unlink(missing_ok=True)
    monkeypatch.setenv("HARNESS_TEST_REQUEST_LOG", str(log))
    assert cli(*_args(task, db)) == 0
    err = capsys.readouterr().err
    assert f"resuming run {killed.id}: {stored} of {ROWS} items already stored" in err
    assert len(_requests(log)) == 3 * (ROWS - stored)  # only the items not stored are asked for
    assert _check_completed(db, clean) == killed.id


def test_disk_full_during_a_run_is_a_clean_error_and_the_rerun_completes_it(
    task: Path, clean: list[tuple[Any, ...]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "small", "size=256k") as small:  # the schema (124 KiB with migration 009's table) fits, the items do not
        db = small / "h.db"
        assert cli(*_args(task, db)) == 2
        err = capsys.readouterr().err
        assert f"error: disk full while writing {db}" in err and "Traceback" not in err and err.count("\n") == 1
        (failed,) = Store.open_read_only(db).runs()
        stored = Store.open_read_only(db).item_count(failed.id)
        assert failed.status == "failed" and failed.error is not None and "disk full" in failed.error and stored < ROWS
        assert cli("show", "--db", db) == 0
        assert f"{failed.id}" in (shown := capsys.readouterr().out) and "failed" in shown and "disk full while writing" in shown

        remount(small, "size=16M")  # space freed
        assert cli(*_args(task, db)) == 0
        err = capsys.readouterr().err
        assert f"resuming failed run {failed.id} (it failed: disk full while writing" in err
        assert _check_completed(db, clean) == failed.id


def test_no_space_for_the_export_leaves_no_half_file_and_the_rerun_exports(
    task: Path, clean: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # room for the database (and its folder, 2 inodes more) but no inode left for the export's files
    with tmpfs(tmp_path / "small", "size=16M,nr_inodes=5") as small:
        db, log = small / "h.db", tmp_path / "requests.log"
        monkeypatch.setenv("HARNESS_TEST_REQUEST_LOG", str(log))
        assert cli(*_args(task, db)) == 2
        err = capsys.readouterr().err
        (failed,) = Store.open_read_only(db).runs()
        assert f"error: disk full while writing {small / failed.id / 'items.jsonl'}" in err and "Traceback" not in err
        assert failed.status == "failed" and Store.open_read_only(db).item_count(failed.id) == ROWS
        assert not (small / failed.id / "items.jsonl").exists() and not list((small / failed.id).glob(".*"))

        remount(small, "nr_inodes=100")
        log.unlink()
        assert cli(*_args(task, db)) == 0
        assert f"resuming failed run {failed.id}" in capsys.readouterr().err
        assert _requests(log) == []  # every item was stored: only the export is redone
        assert _check_completed(db, clean) == failed.id


def test_a_second_identical_command_is_refused_naming_the_running_process(
    task: Path, clean: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, log = tmp_path / "h.db", tmp_path / "requests.log"
    first = _process(task, db, HARNESS_TEST_REQUEST_LOG=str(log), HARNESS_TEST_SLEEP="0.01")
    deadline = time.time() + 60
    while time.time() < deadline and not (db.exists() and _owned(db)):
        time.sleep(0.05)
    monkeypatch.setenv("HARNESS_TEST_REQUEST_LOG", str(log))
    assert cli(*_args(task, db)) == 2
    err = capsys.readouterr().err
    assert f"is being evaluated by process {first.pid} on {socket.gethostname()}" in err and "--new" in err
    assert first.wait(timeout=120) == 0
    assert len(_requests(log)) == 3 * ROWS  # the refused command asked for nothing
    run_id = _check_completed(db, clean)

    # once it finished, the same command makes a new run served from the response cache
    assert cli(*_args(task, db)) == 0
    assert len(_requests(log)) == 3 * ROWS
    assert [r.id for r in Store.open_read_only(db).runs()][0] == run_id


def _owned(db: Path) -> bool:
    try:
        return any(r.owner for r in Store.open_read_only(db).runs())
    except Exception:  # noqa: BLE001 - still being created
        return False


def test_two_identical_commands_started_together_evaluate_each_item_once(task: Path, clean: list[tuple[Any, ...]], tmp_path: Path) -> None:
    db, log = tmp_path / "h.db", tmp_path / "requests.log"
    processes = [_process(task, db, HARNESS_TEST_REQUEST_LOG=str(log), HARNESS_TEST_SLEEP="0.002") for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in processes]
    assert sorted(code for code, _ in outcomes)[0] == 0, outcomes
    for code, err in outcomes:  # the other one was refused cleanly, or came after the first finished (all from the cache)
        assert code == 0 or (code == 2 and "is being evaluated by process" in err and "Traceback" not in err), err
    assert len(_requests(log)) == 3 * ROWS  # each request sent once in total
    runs = Store.open_read_only(db).runs()
    assert all(r.status == "finished" for r in runs)
    assert _rows(db, runs[0].id) == clean


def test_a_backend_error_marks_the_run_failed_with_its_reason_and_ctrl_c_leaves_it_resumable(
    task: Path, clean: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.db"
    calls = [0]
    original = lifecycle_hooks.LoggingScripted.loglikelihood

    def flaky(self: Any, requests: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("the server said no")
        if calls[0] == 3:
            raise KeyboardInterrupt
        return original(self, requests)

    monkeypatch.setattr(lifecycle_hooks.LoggingScripted, "loglikelihood", flaky)
    with pytest.raises(RuntimeError, match="the server said no"):
        cli(*_args(task, db))
    (run,) = Store.open_read_only(db).runs()
    assert (run.status, run.error, run.owner) == ("failed", "RuntimeError: the server said no", None)
    capsys.readouterr()
    assert cli("show", "--db", db, "--json") == 0
    assert json.loads(capsys.readouterr().out) == [{"id": run.id, "created_at": run.created_at, "status": "failed",
                                                   "error": "RuntimeError: the server said no"}]

    assert cli(*_args(task, db)) == 130  # Ctrl-C on the second chunk: not a failure
    assert f"resuming failed run {run.id} (it failed: RuntimeError: the server said no): 64 of {ROWS}" in capsys.readouterr().err
    (run,) = Store.open_read_only(db).runs()
    assert (run.status, run.error, run.owner) == ("running", None, None)

    assert cli(*_args(task, db)) == 0
    assert f"resuming run {run.id}: 64 of {ROWS} items already stored" in capsys.readouterr().err
    assert _check_completed(db, clean) == run.id
