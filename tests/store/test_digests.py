"""Digests (migration 007): a run's revision rises with every write to what a digest summarises, and a digest is
handed out only at the revision it was computed at, by the code that computed it."""

from pathlib import Path

from harness.store import CalibrationRow, ItemRecord, Store, StoredCell, StoredDigest
from harness.store.browse import run_overview


def _item(item_id: str, position: int, acc: float) -> ItemRecord:
    return ItemRecord("c", item_id, position, "q", [" a", " b"], [], 0, [{"kind": "loglikelihood", "logprob": -1.0, "is_greedy": True,
                                                                          "n_tokens": 1}] * 2, None, {"acc": acc}, 0.1, 1, False)


def _digest(store: Store, run_id: str, body: bytes = b"{}", producer: str = "code-1") -> StoredDigest:
    revision = store.run_revision(run_id)
    assert revision is not None
    return StoredDigest(run_id, "run_page", "{}", revision, producer, "2026-12-03T00:00:00+00:00", body)


def test_every_write_to_a_run_raises_its_revision_and_only_its_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    store.create_run("r1", "h1", {}, {}, 0)
    store.create_run("r2", "h2", {}, {}, 0)
    seen = [store.run_revision("r1")]

    def step() -> None:
        seen.append(store.run_revision("r1"))
        assert seen[-1] is not None and seen[-2] is not None and seen[-1] > seen[-2], seen

    store.add_cell(StoredCell("r1", "c", "t", "multiple_choice", "p", "s", 0, "none", "m", {}, ["acc"], 2))
    step()
    store.write_items("r1", [_item("i0", 0, 1.0), _item("i1", 1, 0.0)], {})
    step()
    store.write_items("r1", [_item("i1", 1, 1.0)], {})  # a row written again (INSERT OR REPLACE)
    step()
    store.update_scores("r1", [("c", "i0", {"acc": 0.0}, None)])  # harness rescore
    step()
    store.write_calibration([CalibrationRow("r1", "c", "i0", [[-1.0, -1.0]], [0.5, 0.5], 0, 1, 0)], "acc_calibrated")
    step()
    assert store.run_revision("r2") == 0  # another run's writes leave it alone
    assert run_overview(store, "r1").n_items == store.item_count("r1") == 2  # kept by the same triggers (a replaced row counts once)
    store.finish_run("r1")  # the run's own row is not what a digest summarises
    assert store.run_revision("r1") == seen[-1]
    assert store.run_revision("nope") is None
    store.close()


def test_a_digest_is_handed_out_only_at_its_revision_and_by_its_producer(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    store.create_run("r1", "h1", {}, {}, 0)
    store.add_cell(StoredCell("r1", "c", "t", "multiple_choice", "p", "s", 0, "none", "m", {}, ["acc"], 2))
    store.write_items("r1", [_item("i0", 0, 1.0)], {})
    digest = _digest(store, "r1", b"first")
    assert store.write_digest(digest)
    assert store.digest("r1", "run_page", "{}", "code-1") == digest
    assert store.digest("r1", "run_page", "{}", "code-2") is None  # other code: computed again
    assert store.digest("r1", "run_page", '{"margin": 0.02}', "code-1") is None
    store.write_items("r1", [_item("i1", 1, 0.0)], {})  # the run changed: the digest is stale
    assert store.digest("r1", "run_page", "{}", "code-1") is None
    assert not store.write_digest(digest)  # computed before that write: refused, not kept
    fresh = _digest(store, "r1", b"second")
    assert store.write_digest(fresh) and store.digest("r1", "run_page", "{}", "code-1") == fresh  # replaces the stale one
    store.close()
    reader = Store.open_read_only(tmp_path / "h.db", never_write=True)
    assert reader.digest("r1", "run_page", "{}", "code-1") == fresh
    reader.close()
