"""The viewer's read queries (harness/store/browse.py) on a hand-written store: counts and pages cut in SQL,
score filters that treat an unscorable (NaN) score as none, search that takes LIKE's wildcards literally."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

from harness.store import ItemRecord, Store, StoredCell
from harness.store.browse import ItemFilter, choice_margin, item_page, label_text, margins, run_overview, run_page, score_table


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


def _mc_store(path: Path) -> Store:
    """A multiple-choice run of two cells, 7 items: labels (targets) 0/1/2, clusters x/y, log-probs that give known margins,
    an unscorable item (NaN log-probs and score) in cell a and an item cell b has no score for at all."""
    store = Store(path)
    store.create_run("mc", "m" * 64, {"spec": {}}, {}, 1)
    for cell in ("a", "b"):
        store.add_cell(StoredCell("mc", cell, "t", "multiple_choice", "p", "0" * 64, 0, "none", f"m{cell}", {}, ["acc"], 7))
    nan = float("nan")
    # per item: target, cluster, cell a's log-probs of the three choices, a's acc, b's acc
    rows = [(0, "x", [-1.0, -2.0, -3.0], 1.0, 1.0), (1, "x", [-1.0, -1.5, -4.0], 0.0, 1.0), (2, "y", [-2.0, -1.0, -0.5], 1.0, 0.0),
            (0, "y", [nan, nan, nan], nan, 1.0), (1, "x", [-3.0, -1.0, -3.5], 1.0, 1.0), (2, "y", [-0.1, -5.0, -2.0], 0.0, None),
            (0, "x", [-1.0, -1.2, -9.0], 1.0, 0.0)]
    records = []
    for k, (target, cluster, logprobs, acc_a, acc_b) in enumerate(rows):
        for cell, acc in (("a", acc_a), ("b", acc_b)):
            response = [{"kind": "loglikelihood", "logprob": v if cell == "a" else -1.0, "is_greedy": False, "n_tokens": 1, "latency_s": 0.0}
                        for v in logprobs]
            scores = {} if acc is None else {"acc": acc}
            records.append(ItemRecord(cell, f"m{k}", k, f'Question {k}: "quoted" NEAR(a b) * OR -- {k % 2}', [" red", " green", " blue"], [],
                                      target, response, None, scores, 0.0, 1, False, cluster))
    store.write_items("mc", records, {})
    return store


def test_item_page_unscorable_label_cluster_and_margin(tmp_path: Path) -> None:
    store = _mc_store(tmp_path / "h.db")
    try:
        page = lambda **kw: item_page(store, "mc", ["a", "b"], ItemFilter(metric="acc", **kw))  # noqa: E731
        assert page(unscorable=True).item_ids == ["m3", "m5"]  # NaN in a; no acc at all in b
        assert item_page(store, "mc", ["b"], ItemFilter(metric="acc", unscorable=True)).item_ids == ["m5"]  # only the cells shown
        assert page(label="0").item_ids == ["m0", "m3", "m6"] and page(label="2").total == 2 and page(label="7").total == 0
        assert page(cluster="y").item_ids == ["m2", "m3", "m5"] and page(cluster="nope").item_ids == []
        assert page(cluster="x", label="1").item_ids == ["m1", "m4"]
        assert page(disagree=True).item_ids == ["m1", "m2", "m6"]  # m3 (NaN in a) and m5 (none in b) have one score: no disagreement
        assert page(lower_in="a", higher_in="b", cluster="x").item_ids == ["m1"]
        # margins in a: correct minus best wrong; m3 has NaN log-probs, so none (last)
        by_margin = page(sort="margin", margin_in="a")
        assert by_margin.item_ids == ["m5", "m1", "m6", "m2", "m0", "m4", "m3"] and by_margin.total == 7
        assert page(sort="margin", margin_in="a", cluster="x").item_ids == ["m1", "m6", "m0", "m4"]
        second = item_page(store, "mc", ["a", "b"], ItemFilter(metric="acc", sort="margin", margin_in="a"), offset=2, limit=2)
        assert second.item_ids == ["m6", "m2"] and second.total == 7 and set(second.rows) == {(i, c) for i in ("m6", "m2") for c in "ab"}
        table = score_table(store, "mc", ["a", "b"], "acc")
        assert table.label_values() == ["0", "1", "2"] and table.cluster_values() == ["x", "y"]
        assert [label_text(v) for v in table.label_values()] == ["choice 0", "choice 1", "choice 2"] and label_text('["Paris"]') == '["Paris"]'
        assert margins(store, "mc", "a", ["m0", "m5", "zz"]).tolist()[:2] == [1.0, -1.9]
    finally:
        store.close()


def test_choice_margin() -> None:
    lp = lambda *values: [{"logprob": v} for v in values]  # noqa: E731
    assert choice_margin(3, lp(-1.0, -2.0, -4.0), 0) == 1.0 and choice_margin(3, lp(-1.0, -2.0, -4.0), 2) == -3.0
    assert choice_margin(3, lp(-1.0, -2.0, -4.0), [1, 2]) == -1.0  # several correct: the best of them
    assert choice_margin(2, lp(-1.0, -2.0, -0.1), 1) == -1.0  # acc_mutual_info's unconditional results after the choices: not choices
    for bad in ((3, lp(-1.0, float("nan"), -4.0), 0), (3, lp(-1.0, -2.0), 0), (2, lp(-1.0, -2.0), 5), (2, lp(-1.0, -2.0), [0, 1]),
                (2, lp(-1.0, -2.0), ["gold"]), (1, [{"text": "x"}], 0)):
        assert math.isnan(choice_margin(*bad))


@pytest.mark.parametrize("text", ['"quoted"', '" OR 1=1 --', "NEAR(a b)", "* OR", "'; DROP TABLE items; --", '"', "\\", "%", "_", "Qu", "q",
                                  "ion 3: \"quo", "0_0", "\x00", "é"])
def test_search_takes_any_string_literally(tmp_path: Path, text: str) -> None:
    store = _mc_store(tmp_path / "h.db")
    try:
        expected = sorted(f"m{k}" for k in range(7) if text.lower() in f'question {k}: "quoted" near(a b) * or -- {k % 2}'
                          or text.lower() in f"m{k}" or text.lower() in '[" red", " green", " blue"]' or text.lower() in str([0, 1, 2, 0, 1, 2, 0][k]))
        expected = [] if text == "\x00" else expected  # no stored text holds a NUL
        found = item_page(store, "mc", ["a", "b"], ItemFilter(search=text))
        assert sorted(found.item_ids) == expected and found.total == len(expected)
    finally:
        store.close()


def test_search_index_follows_rewrites_and_rescoring(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    try:
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="out a1")).item_ids == ["i1"]
        store.write_items("r1", [ItemRecord("a", "i1", 1, "prompt rewritten", None, [], ["gold"], [{"text": "zebra"}], None,
                                            {"acc": 1.0}, 0.0, 1, False)], {})  # INSERT OR REPLACE: the old row's text leaves the index
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="out a1")).item_ids == []
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="zebra")).item_ids == ["i1"]
        store.update_scores("r1", [("a", "i1", {"acc": 0.0}, "giraffe")])  # rescoring rewrites the extracted answer
        assert item_page(store, "r1", ["a", "b"], ItemFilter(search="giraffe")).item_ids == ["i1"]
        assert item_page(store, "r1", ["b"], ItemFilter(search="prompt 50%")).item_ids == ["i1"]  # cell b's row untouched
        assert store.db.execute("INSERT INTO items_search(items_search) VALUES ('integrity-check')").fetchall() == []
    finally:
        store.close()


def test_run_page_filters_by_creation_day(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    try:
        for run, day in (("r2", "2026-03-01T23:59:59+00:00"), ("r3", "2026-03-02T00:00:00+00:00"), ("r4", "2026-03-05T12:00:00+00:00")):
            store.create_run(run, run * 32, {"spec": {}}, {}, 1)
            store.db.execute("UPDATE runs SET created_at = ? WHERE id = ?", (day, run))  # a run made on that day
        store.db.execute("UPDATE runs SET created_at = '2026-02-01T10:00:00+00:00' WHERE id = 'r1'")
        ids = lambda **kw: [o.run.id for o in run_page(store, **kw).runs]  # noqa: E731
        assert ids(created_from=date(2026, 3, 2)) == ["r4", "r3"]
        assert ids(created_to=date(2026, 3, 1)) == ["r2", "r1"]  # the whole last day
        assert ids(created_from=date(2026, 3, 1), created_to=date(2026, 3, 2)) == ["r3", "r2"]
        assert run_page(store, created_from=date(2026, 3, 2), limit=1, offset=1).total == 2
        assert run_page(store, created_from=date(2026, 3, 6)).runs == [] and run_page(store, model="ma", created_to=date(2026, 2, 1)).total == 1
    finally:
        store.close()
