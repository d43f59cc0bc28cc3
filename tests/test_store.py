from pathlib import Path

import pytest

from harness import store as store_module
from harness.store import Store


def test_runs_started_in_the_same_second_keep_their_creation_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run ids are "<second>-<random hash>": within one second the hash would decide the order
    monkeypatch.setattr(store_module, "now", lambda: "2026-11-23T01:00:00+00:00")
    store = Store(tmp_path / "h.db")
    store.create_run("20261123-010000-ffffff", "a", {}, {}, 0)
    store.create_run("20261123-010000-000000", "b", {}, {}, 0)
    assert [r["id"] for r in store.runs()] == ["20261123-010000-ffffff", "20261123-010000-000000"]
    assert store.resolve_run("latest") == "20261123-010000-000000"
    store.close()
