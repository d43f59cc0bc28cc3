from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.fewshot.selectors import SELECTORS, item_rng
from harness.tasks.task import load_task
from tests.helpers import write_task


@pytest.fixture
def task(tmp_path: Path):
    return load_task(write_task(tmp_path, rows=30, fewshot_rows=30))


@pytest.mark.parametrize("name", ["first_k", "random", "balanced"])
def test_never_selects_the_item_itself_even_from_same_split(task, name: str) -> None:
    pool = task.items("test")  # pool == evaluated split: the worst case
    selector = SELECTORS.get(name)(pool)
    for item in pool:
        chosen = selector.select(item, 5, item_rng(7, item.id))
        assert len(chosen) == 5 and item.id not in {c.id for c in chosen}
        assert len({c.id for c in chosen}) == 5


@pytest.mark.parametrize("name", ["random", "balanced"])
def test_seeded_and_independent_of_other_items(task, name: str) -> None:
    pool = task.items("fewshot")
    item = task.items("test")[3]
    first = [c.id for c in SELECTORS.get(name)(pool).select(item, 4, item_rng(1, item.id))]
    again = [c.id for c in SELECTORS.get(name)(list(pool)).select(item, 4, item_rng(1, item.id))]
    other_seed = [c.id for c in SELECTORS.get(name)(pool).select(item, 4, item_rng(2, item.id))]
    assert first == again
    assert first != other_seed


def test_balanced_covers_labels_evenly(task) -> None:
    pool = task.items("fewshot")
    for item in task.items("test")[:10]:
        chosen = SELECTORS.get("balanced")(pool).select(item, 6, item_rng(0, item.id))
        labels = sorted(c.label for c in chosen)
        assert labels == ["0", "0", "1", "1", "2", "2"]


def test_first_k_is_file_order(task) -> None:
    pool = task.items("fewshot")
    chosen = SELECTORS.get("first_k")(pool).select(task.items("test")[0], 3, item_rng(0, "x"))
    assert [c.id for c in chosen] == ["f0", "f1", "f2"]


def test_pool_too_small(task) -> None:
    with pytest.raises(HarnessError, match="pool has only 30"):
        SELECTORS.get("random")(task.items("fewshot")).select(task.items("test")[0], 31, item_rng(0, "x"))


def test_unknown_selector() -> None:
    with pytest.raises(HarnessError, match="Did you mean 'random'"):
        SELECTORS.get("randon")
