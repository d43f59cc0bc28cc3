"""The viewer's read queries (harness/store/browse.py) on a hand-written store: counts and pages cut in SQL,
score filters that treat an unscorable (NaN) score as none, search that takes LIKE's wildcards literally."""

from __future__ import annotations

from pathlib import Path

from harness.store import ItemRecord, Store, StoredCell
from harness.store.browse import ItemFilter, item_page, run_overview, run_page


def _store(path: Path) -> Store:
    store = Store(path)
    store.create_run("r1", "h" * 64, {"spec": {}}, {}, 1)
    for cell in ("a", "b"):
        store.add_cell(StoredCell("r1", cell, "t", "generate", "p", "0" * 64, 0, "none", f"m{cell}", {}, ["acc"], 5))
    scores = {"a": [1.0, 0.0, float("nan"), 1.0, 0.0], "b": [1.0, 1.0, 1.0, 0.0, 0.0]}
    texts = ["plain", "50% off", "100_000", "x", "y"]
    records = [ItemRecord(cell, f"i{k}", k, f"prompt {texts[k]}", None, [], ["gold"], [{"text": f"out {cell}{k}"}], None,
                          {"acc": scores[cell][k]}, 0.0, 1, False) for cell in ("a", "b") for k in range(5)]
    store.write_items("r1", records, {})
    return store


def test_item_page_filters_and_pages(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    try:
        everything = item_page(store, "r1", ["a", "b"], ItemFilter(), limit=2, offset=2)
        assert everything.total == 5 and everything.item_ids == ["i2", "i3"] and len(everything.rows) == 4
        flips = item_page(store, "r1", ["a", "b"], ItemFilter(metric="acc", lower_in="a", higher_in="b"))
        assert flips.item_ids == ["i1"]  # i2 is unscorable in a: not a flip
        assert item_page(store, "r1", ["a", "b"], ItemFilter(metric="acc", lower_in="b", higher_in="a")).item_ids == ["i3"]
        assert item_page(store, "r1", ["a", "b"], ItemFilter(metric="acc", disagree=True)).item_ids == ["i1", "i3"]
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="50%")).item_ids == ["i1"]
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="0_0")).item_ids == ["i2"]
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="0%0")).item_ids == []
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="OUT B3")).item_ids == ["i3"]  # outputs, any case
        assert item_page(store, "r1", ["a"], ItemFilter(search="out b3")).item_ids == []  # only the cells asked for
    finally:
        store.close()


def test_run_page_counts_filters_and_pages(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    try:
        store.create_run("r2", "g" * 64, {"spec": {}}, {}, 1)
        store.fail_run("r2", "boom")
        page = run_page(store)
        assert page.total == 2 and [o.run.id for o in page.runs] == ["r2", "r1"]
        assert run_page(store, model="ma").total == 1 and run_page(store, status="failed").runs[0].run.error == "boom"
        assert run_page(store, limit=1, offset=1).runs[0].run.id == "r1"
        overview = run_overview(store, "r1")
        assert overview is not None and overview.n_items == 10 and overview.n_planned == 10 and overview.models == ["ma", "mb"]
        assert run_overview(store, "nope") is None
    finally:
        store.close()
