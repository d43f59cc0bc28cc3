"""The viewer's digests (harness/view/digest.py): a page served from a digest is the page computed from the items, byte for
byte; a digest is used only while its run is unchanged and its producer is this code; a damaged one is ignored."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from harness.store import Store, StoredDigest
from harness.view import app as app_module
from harness.view import create_app
from harness.view import digest as digest_module
from harness.view.digest import producer, write_digests
from tests.helpers import cli
from tests.view.conftest import Stored


def _copy(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def _pages(stored: Stored) -> list[tuple[str, dict[str, str]]]:
    toy = stored.toy
    store = Store.open_read_only(stored.db)
    first, *_, last = [c.cell_id for c in store.cells([toy])]
    store.close()
    return [("/", {}), (f"/runs/{toy}", {}), (f"/runs/{stored.hostile}", {}), (f"/runs/{stored.failed}", {}), (f"/runs/{toy}/items", {}),
            (f"/runs/{toy}/items", {"show": "disagree", "page": "2"}), (f"/runs/{toy}/items", {"show": "flips", "a": first, "b": last}),
            (f"/runs/{toy}/items", {"label": "1"}), (f"/runs/{stored.hostile}/items", {"show": "unscorable"}),
            (f"/runs/{toy}/items", {"sort": "margin", "a": last, "page": "2"}), (f"/runs/{toy}/items", {"sort": "margin", "show": "disagree"})]


def _html(db: Path, path: str, params: dict[str, str]) -> str:
    response = TestClient(create_app(db), base_url="http://127.0.0.1").get(path, params=params)
    assert response.status_code == 200, (path, response.text[:300])
    return response.text.replace(str(db), "DB")


@pytest.fixture
def digested(stored: Stored, tmp_path: Path) -> Iterator[Path]:
    """A copy of the viewer's test database with the digests of its runs (made by ``harness digest``)."""
    db = _copy(stored.db, tmp_path / "digested.db")
    assert cli("digest", "--db", db, stored.toy, stored.hostile, stored.failed) == 0
    yield db


def _refuse_computing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the viewer's own computations record that they ran (and fail), so a page that needs one cannot come from a digest."""
    calls: list[str] = []

    def refuse(name: str) -> object:
        def run(*args: object, **kwargs: object) -> object:
            calls.append(name)
            raise AssertionError(f"{name} computed although a digest was current")
        return run

    for name in ("page_results", "best_cells", "score_table", "margins"):
        monkeypatch.setattr(app_module, name, refuse(name))
    return calls


def test_every_page_from_a_digest_is_the_page_computed_from_the_items(stored: Stored, digested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = {(path, tuple(sorted(params.items()))): _html(stored.db, path, params) for path, params in _pages(stored)}
    calls = _refuse_computing(monkeypatch)
    for path, params in _pages(stored):
        assert _html(digested, path, params) == live[(path, tuple(sorted(params.items())))], (path, params)
    assert calls == []


def test_a_run_changed_after_its_digest_is_computed_again(stored: Stored, digested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(digested)
    try:
        (item, *_) = [i for i in store.items([stored.toy]) if i.scores.get("acc") == 1.0]
        store.update_scores(stored.toy, [(item.cell_id, item.item_id, {**item.scores, "acc": 0.0}, item.extracted)])  # as rescore writes
    finally:
        store.close()
    changed = _html(digested, f"/runs/{stored.toy}", {})
    assert changed != _html(stored.db, f"/runs/{stored.toy}", {}).replace(str(stored.db), "DB")  # the new score shows
    calls = _refuse_computing(monkeypatch)
    with pytest.raises(AssertionError, match="computed although"):
        _html(digested, f"/runs/{stored.toy}", {})
    assert calls == ["page_results"]
    assert cli("digest", "--db", digested, stored.toy) == 0  # digested again: served from it
    assert _html(digested, f"/runs/{stored.toy}", {}) == changed


def test_a_digest_of_other_code_or_a_damaged_one_is_not_used(stored: Stored, digested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _html(stored.db, f"/runs/{stored.toy}", {})
    store = Store(digested)
    try:
        revision = store.run_revision(stored.toy)
        assert revision is not None
        store.write_digest(StoredDigest(stored.toy, "run_page", "{}", revision, producer(), "now", b'{"tasks": "not a list"'))
        for kind in ("score_table", "margins"):
            for found in [d for d in [store.digest(stored.toy, kind, k, producer()) for k in _table_keys(store, stored.toy)] if d]:
                store.write_digest(StoredDigest(stored.toy, kind, found.key, revision, producer(), "now", b"not an npz file"))
    finally:
        store.close()
    assert _html(digested, f"/runs/{stored.toy}", {}) == expected  # computed instead
    for params in ({}, {"sort": "margin"}):
        assert _html(digested, f"/runs/{stored.toy}/items", params) == _html(stored.db, f"/runs/{stored.toy}/items", params)
    monkeypatch.setattr(digest_module, "producer", lambda: "another version of harness")
    calls = _refuse_computing(monkeypatch)
    with pytest.raises(AssertionError):
        _html(digested, "/", {})
    assert calls == ["best_cells"]


def _table_keys(store: Store, run_id: str) -> list[str]:
    from harness.store.browse import run_overview
    from harness.view.pages import task_cells

    overview = run_overview(store, run_id)
    assert overview is not None
    out = []
    for task in overview.tasks:
        ids, metric, _ = task_cells(overview, task)
        out.append(digest_module._table_key(ids, metric))
    return out


def test_a_page_asked_with_a_margin_is_computed(stored: Stored, digested: Path) -> None:
    assert _html(digested, f"/runs/{stored.toy}", {"margin": "2"}) == _html(stored.db, f"/runs/{stored.toy}", {"margin": "2"})


def test_a_digest_computed_while_the_run_changed_is_not_kept(stored: Stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _copy(stored.db, tmp_path / "racing.db")
    store = Store(db)
    real = digest_module.page_results

    def meanwhile(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        other = Store(db)  # a rescore in another process while the digest is computed
        (item, *_) = other.items([stored.toy])
        other.update_scores(stored.toy, [(item.cell_id, item.item_id, item.scores, "changed")])
        other.close()
        return out

    monkeypatch.setattr(digest_module, "page_results", meanwhile)
    try:
        written = write_digests(store, stored.toy)
        assert written.stale
        assert store.digest(stored.toy, "run_page", "{}", producer()) is None
    finally:
        store.close()


def test_harness_run_keeps_the_digest_of_a_big_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import digest as cli_digest
    from tests.decide_support import toy_task

    toy_task(tmp_path / "tasks", rows=12)
    db = tmp_path / "h.db"
    args = ("run", "--db", db, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--model", "skilled:0.7", "--quiet")
    assert cli(*args) == 0
    store = Store.open_read_only(db)
    run = store.resolve_run("latest")
    assert store.digest(run, "run_page", "{}", producer()) is None  # 12 rows: the viewer computes its page in no time
    store.close()
    monkeypatch.setattr(cli_digest, "DIGEST_MIN_ROWS", 10)
    assert cli(*args, "--new") == 0
    store = Store.open_read_only(db)
    run = store.resolve_run("latest")
    assert store.digest(run, "run_page", "{}", producer()) is not None and store.digest(run, "best_cells", "{}", producer()) is not None
    store.close()
    capsys.readouterr()
    assert cli("digest", "--db", db) == 0  # the first run, made below the threshold then
    assert "kept the viewer's digest of run" in capsys.readouterr().out
    assert cli("digest", "--db", db) == 0
    assert "no run to digest" in capsys.readouterr().out


def test_a_big_run_computed_without_its_digest_says_how_to_keep_one(stored: Stored, digested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "DIGEST_MIN_ROWS", 10)  # the toy run counts as big
    live = _html(stored.db, f"/runs/{stored.toy}", {})
    assert 'id="computed-note"' in live and f"harness digest {stored.toy}" in live
    assert 'id="computed-note"' not in _html(digested, f"/runs/{stored.toy}", {})
