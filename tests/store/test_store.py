from pathlib import Path

import pytest

from harness.store import ItemRecord, Store, StoredCell
from harness.store import store as store_module
from harness.store.migrations import MIGRATIONS


def test_runs_started_in_the_same_second_keep_their_creation_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run ids are "<second>-<random hash>": within one second the hash would decide the order
    monkeypatch.setattr(store_module, "now", lambda: "2026-11-23T01:00:00+00:00")
    store = Store(tmp_path / "h.db")
    store.create_run("20261123-010000-ffffff", "a", {}, {}, 0)
    store.create_run("20261123-010000-000000", "b", {}, {}, 0)
    assert [r.id for r in store.runs()] == ["20261123-010000-ffffff", "20261123-010000-000000"]
    assert store.resolve_run("latest") == "20261123-010000-000000"
    store.close()


def _old_database(path: Path) -> None:
    """A database as the first release wrote it: only migration 001, one run with one item and one cache entry."""
    import sqlite3

    (name, sql), *_ = MIGRATIONS
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
    assert store.migrations() == ["001_initial", "002_cache_run_id", "003_item_cluster", "004_calibration", "005_run_lifecycle",
                                  "006_view_indices", "007_run_digests", "008_race_outcomes", "009_cost_ledger"]
    assert store.runs()[0].status == "finished" and store.runs()[0].error is None and store.runs()[0].owner is None
    (row,) = store.items(["old"])
    assert row.item_id == "i1" and row.cluster is None
    from harness.store.browse import run_overview

    overview = run_overview(store, "old")
    assert overview is not None and overview.n_items == 1  # migration 007 counts the rows stored before it
    origins: Counter = Counter()
    assert store.cached(["k-old"], origins=origins).keys() == {"k-old"}
    assert origins == Counter({None: 1})
    store.close()
    Store(path).close()  # opening again applies nothing twice


def test_items_keep_their_cluster_and_cache_entries_the_run_that_stored_them(tmp_path: Path) -> None:
    from collections import Counter

    from harness.requests import LoglikelihoodResult

    store = Store(tmp_path / "h.db")
    store.create_run("r1", "h", {}, {}, 0)
    store.add_cell(StoredCell("r1", "c", "t", "multiple_choice", "p", "s", 0, "none", "m", {}, ["acc"], 2))
    records = [
        ItemRecord(cell_id="c", item_id=f"i{n}", position=n, prompt="q", continuations=["a"], demo_ids=[], target=0,
                   response=[], extracted=None, scores={"acc": 1.0}, latency_s=0.0, n_tokens=1, cached=False, cluster=cluster)
        for n, cluster in enumerate(["passage-1", None])
    ]
    store.write_items("r1", records, {"k1": LoglikelihoodResult(logprob=-1.0, is_greedy=True, n_tokens=1)})
    assert [(r.item_id, r.cluster) for r in store.items(["r1"])] == [("i0", "passage-1"), ("i1", None)]
    origins: Counter = Counter()
    assert store.cached(["k1", "missing"], origins=origins).keys() == {"k1"}
    assert origins == Counter({"r1": 1})
    assert store.cached(["k1"]).keys() == {"k1"}  # without origins, as before


# -- typed reads ----------------------------------------------------------------------
def _written(path: Path) -> Store:
    """A store with one finished run: a multiple-choice cell of two items (one a chat prompt) and a cache entry."""
    from harness.requests import LoglikelihoodResult, result_to_json

    store = Store(path)
    store.create_run("r1", "hash-1", {"spec": {"split": "test"}, "warnings": ["w"]}, {"harness": "0"}, 7)
    store.add_cell(StoredCell("r1", "c", "t", "multiple_choice", "p", "s", 2, "first_k", "m", {"id": "m"}, ["acc", "acc_norm"], 2))
    response = [result_to_json(LoglikelihoodResult(logprob=-0.5, is_greedy=True, n_tokens=1)),
                result_to_json(LoglikelihoodResult(logprob=-2.0, is_greedy=False, n_tokens=1))]
    store.write_items("r1", [
        ItemRecord("c", "i0", 0, "Q: ä?", [" a", " b"], ["d1", "d2"], 0, response, None, {"acc": 1.0, "acc_norm": 1.0}, 0.25, 2, False,
                   "passage-1"),
        ItemRecord("c", "i1", 1, [{"role": "user", "content": "Q?"}], [" a", " b"], ["d2", "d1"], [0, 1], response, None,
                   {"acc": 0.0, "acc_norm": 0.0}, 0.5, 2, True),
    ], {})
    store.finish_run("r1")
    return store


def test_reads_are_frozen_records_with_their_columns_decoded(tmp_path: Path) -> None:
    import dataclasses

    from harness.requests import LoglikelihoodResult
    from harness.store import ItemScores, StoredItem, StoredRun

    store = _written(tmp_path / "h.db")
    (run,) = store.runs()
    assert isinstance(run, StoredRun) and run.id == "r1" and run.status == "finished" and run.finished_at is not None
    assert run.config == {"spec": {"split": "test"}, "warnings": ["w"]} and run.versions == {"harness": "0"} and run.seed == 7
    assert store.run_config("r1") == run.config and store.finished_run("hash-1") == "r1" and store.finished_run("other") is None
    (cell,) = store.cells(["r1"])
    assert cell.model_json == {"id": "m"} and cell.metrics == ["acc", "acc_norm"]
    first, second = store.items(["r1"])
    assert isinstance(first, StoredItem) and (first.run_id, first.cell_id, first.item_id, first.position) == ("r1", "c", "i0", 0)
    assert first.prompt == "Q: ä?" and second.prompt == [{"role": "user", "content": "Q?"}]
    assert first.continuations == [" a", " b"] and first.demo_ids == ["d1", "d2"] and first.target == 0 and second.target == [0, 1]
    assert first.scores == {"acc": 1.0, "acc_norm": 1.0} and first.latency_s == 0.25 and first.n_tokens == 2
    assert first.cached is False and second.cached is True and first.cluster == "passage-1" and second.cluster is None
    assert first.results() == [LoglikelihoodResult(logprob=-0.5, is_greedy=True, n_tokens=1),
                               LoglikelihoodResult(logprob=-2.0, is_greedy=False, n_tokens=1)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.extracted = "x"  # type: ignore[misc]
    assert store.items(["r1"], "c") == [first, second] and store.items(["r1"], "other") == []
    assert store.scores(["r1"]) == [ItemScores("r1", "c", "i0", first.scores, "passage-1"), ItemScores("r1", "c", "i1", second.scores, None)]
    store.close()


def test_the_jsonl_mirror_and_the_dataframe_rows_come_from_one_item_row(tmp_path: Path) -> None:
    import json

    from harness.store import export_run, item_row

    store = _written(tmp_path / "h.db")
    lines = (export_run(store, "r1") / "items.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        '{"run_id": "r1", "cell_id": "c", "task": "t", "prompt_variant": "p", "shots": 2, "selector": "first_k", "model": "m", '
        '"item_id": "i0", "position": 0, "prompt": "Q: ä?", "continuations": [" a", " b"], "demo_ids": ["d1", "d2"], "target": 0, '
        '"response": [{"logprob": -0.5, "is_greedy": true, "n_tokens": 1, "latency_s": 0.0, "kind": "loglikelihood"}, '
        '{"logprob": -2.0, "is_greedy": false, "n_tokens": 1, "latency_s": 0.0, "kind": "loglikelihood"}], "extracted": null, '
        '"scores": {"acc": 1.0, "acc_norm": 1.0}, "latency_s": 0.25, "n_tokens": 2, "cached": false, "cluster": "passage-1"}'
    )
    (cell,) = store.cells(["r1"])
    flat = item_row(store.items(["r1"])[1], cell, score_columns=True)
    assert list(flat)[-5:] == ["latency_s", "n_tokens", "cached", "score_acc", "score_acc_norm"] and "cluster" not in flat
    assert {k: v for k, v in flat.items() if not k.startswith("score_")} == {
        k: v for k, v in json.loads(lines[1]).items() if k not in ("scores", "cluster")}
    store.close()


def _old_calibration_database(path: Path) -> None:
    """A database of migrations 001-003 where the old ``harness calibrate`` made its table itself, with one row."""
    import sqlite3

    store = _written(path)
    store.close()
    con = sqlite3.connect(path)
    con.execute("DELETE FROM migrations WHERE name = '004_calibration'")
    con.execute("DROP TABLE calibration")
    con.execute(  # exactly the statement harness/runner/calibration.py ran before migration 004
        """CREATE TABLE IF NOT EXISTS calibration (
    run_id TEXT NOT NULL, cell_id TEXT NOT NULL, item_id TEXT NOT NULL,
    content_free_json TEXT NOT NULL, p_cf_json TEXT NOT NULL,
    predicted INTEGER NOT NULL, calibrated INTEGER NOT NULL, target INTEGER NOT NULL,
    PRIMARY KEY (run_id, cell_id, item_id))"""
    )
    con.execute("INSERT INTO calibration VALUES ('r1', 'c', 'i0', '[[-0.1, -2.0], [NaN, -1.0]]', '[0.7, 0.3]', 0, 1, 0)")
    con.commit()
    con.close()


def test_a_database_with_the_old_calibration_table_migrates_and_reads_its_rows(tmp_path: Path) -> None:
    import math

    from harness.store import CalibrationRow

    path = tmp_path / "old.db"
    _old_calibration_database(path)
    store = Store(path)
    assert store.migrations()[-6:] == ["004_calibration", "005_run_lifecycle", "006_view_indices", "007_run_digests", "008_race_outcomes",
                                       "009_cost_ledger"]
    (row,) = store.calibration("r1")
    assert (row.item_id, row.p_cf, row.predicted, row.calibrated, row.target) == ("i0", [0.7, 0.3], 0, 1, 0)
    assert row.content_free[0] == [-0.1, -2.0] and math.isnan(row.content_free[1][0])
    store.write_calibration([CalibrationRow("r1", "c", "i0", [[-1.0, -1.0]], None, 0, 0, 0),
                             CalibrationRow("r1", "c", "i1", [[-1.0, -1.0]], [0.5, 0.5], 1, 1, 0)], "acc_calibrated")
    assert [(r.item_id, r.p_cf, r.calibrated) for r in store.calibration("r1")] == [("i0", None, 0), ("i1", [0.5, 0.5], 1)]
    scores = {s.item_id: s.scores for s in store.scores(["r1"])}
    assert scores == {"i0": {"acc": 1.0, "acc_norm": 1.0, "acc_calibrated": 1.0}, "i1": {"acc": 0.0, "acc_norm": 0.0, "acc_calibrated": 0.0}}
    store.close()
    assert Store(path).migrations() == ["001_initial", "002_cache_run_id", "003_item_cluster", "004_calibration", "005_run_lifecycle",
                                        "006_view_indices", "007_run_digests", "008_race_outcomes", "009_cost_ledger"]  # once


def test_a_new_database_has_the_calibration_table_before_any_calibration(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    assert store.migrations() == [name for name, _ in MIGRATIONS] and store.calibration("none") == []
    store.close()
