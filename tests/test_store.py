from pathlib import Path

import pytest

from harness.store import store as store_module
from harness.store.store import Store


def test_runs_started_in_the_same_second_keep_their_creation_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run ids are "<second>-<random hash>": within one second the hash would decide the order
    monkeypatch.setattr(store_module, "now", lambda: "2026-11-23T01:00:00+00:00")
    store = Store(tmp_path / "h.db")
    store.create_run("20261123-010000-ffffff", "a", {}, {}, 0)
    store.create_run("20261123-010000-000000", "b", {}, {}, 0)
    assert [r["id"] for r in store.runs()] == ["20261123-010000-ffffff", "20261123-010000-000000"]
    assert store.resolve_run("latest") == "20261123-010000-000000"
    store.close()


def _old_database(path: Path) -> None:
    """A database as the first release wrote it: only migration 001, one run with one item and one cache entry."""
    import sqlite3

    (name, sql), *_ = store_module.MIGRATIONS
    assert name == "001_initial"
    con = sqlite3.connect(path)
    con.executescript(sql)
    con.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    con.execute("INSERT INTO migrations VALUES ('001_initial', '2026-01-01T00:00:00+00:00')")
    con.execute("INSERT INTO runs VALUES ('old', '2026-01-01', NULL, 'finished', 'h', '{}', '{}', 0)")
    con.execute("INSERT INTO cells VALUES ('old', 'c', 't', 'multiple_choice', 'p', 's', 0, 'none', 'm', '{}', '[\"acc\"]', 1)")
    con.execute("INSERT INTO items VALUES ('old', 'c', 'i1', 0, '\"q\"', '[\"a\"]', '[]', '0', '[]', NULL, '{\"acc\": 1.0}', 0.1, 1, 0)")
    con.execute("INSERT INTO cache VALUES ('k-old', '{\"kind\": \"loglikelihood\", \"logprob\": -1.0, \"is_greedy\": true, \"n_tokens\": 1}', '2026-01-01')")
    con.commit()
    con.close()


def test_an_old_database_migrates_and_old_rows_read_with_null_run_id_and_cluster(tmp_path: Path) -> None:
    from collections import Counter

    path = tmp_path / "old.db"
    _old_database(path)
    store = Store(path)
    applied = [r["name"] for r in store.db.execute("SELECT name FROM migrations ORDER BY name")]
    assert applied == ["001_initial", "002_cache_run_id", "003_item_cluster"]
    (row,) = store.items(["old"])
    assert row["item_id"] == "i1" and row["cluster"] is None
    origins: Counter = Counter()
    assert store.cached(["k-old"], origins=origins).keys() == {"k-old"}
    assert origins == Counter({None: 1})
    store.close()
    Store(path).close()  # opening again applies nothing twice


def test_items_keep_their_cluster_and_cache_entries_the_run_that_stored_them(tmp_path: Path) -> None:
    from collections import Counter

    from harness.requests import LoglikelihoodResult
    from harness.store.store import CellRecord, ItemRecord

    store = Store(tmp_path / "h.db")
    store.create_run("r1", "h", {}, {}, 0)
    store.add_cell(CellRecord("r1", "c", "t", "multiple_choice", "p", "s", 0, "none", "m", {}, ["acc"], 2))
    records = [
        ItemRecord(cell_id="c", item_id=f"i{n}", position=n, prompt="q", continuations=["a"], demo_ids=[], target=0,
                   response=[], extracted=None, scores={"acc": 1.0}, latency_s=0.0, n_tokens=1, cached=False, cluster=cluster)
        for n, cluster in enumerate(["passage-1", None])
    ]
    store.write_items("r1", records, {"k1": LoglikelihoodResult(logprob=-1.0, is_greedy=True, n_tokens=1)})
    assert [(r["item_id"], r["cluster"]) for r in store.items(["r1"])] == [("i0", "passage-1"), ("i1", None)]
    origins: Counter = Counter()
    assert store.cached(["k1", "missing"], origins=origins).keys() == {"k1"}
    assert origins == Counter({"r1": 1})
    assert store.cached(["k1"]).keys() == {"k1"}  # without origins, as before
