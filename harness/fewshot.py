"""Few-shot example selectors: which demonstrations an item gets.

Every selector is built once per (task, pool) and asked per item with that item's own RNG,
seeded from (run seed, item id). So the demonstrations of an item do not depend on which
other items are evaluated, on their order or on the batch size, and the evaluated item (same
id or same input) is never its own demonstration.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence

from harness.errors import HarnessError
from harness.registry import Registry
from harness.tasks import Item


class Selector(ABC):
    """Chooses ``k`` demonstrations for an item from a fixed pool."""

    def __init__(self, pool: Sequence[Item]) -> None:
        self.pool = list(pool)

    def candidates(self, item: Item) -> list[Item]:
        return [p for p in self.pool if p.id != item.id and p.input != item.input]

    def select(self, item: Item, k: int, rng: random.Random) -> list[Item]:
        if k == 0:
            return []
        candidates = self.candidates(item)
        if k > len(candidates):
            raise HarnessError(f"{k}-shot needs {k} demonstrations but the few-shot pool has only {len(candidates)} usable rows")
        return self.choose(item, candidates, k, rng)

    @abstractmethod
    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        """Pick ``k`` of ``candidates`` (which already exclude the item itself)."""


SELECTORS: Registry[type[Selector]] = Registry("selector")


def item_rng(seed: int, item_id: str) -> random.Random:
    """An RNG private to one item, stable across processes (no Python hash randomisation)."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@SELECTORS.register("first_k")
class FirstK(Selector):
    """The first k pool rows, in file order: the classic fixed prompt."""

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        return candidates[:k]


@SELECTORS.register("random")
class RandomK(Selector):
    """k rows drawn without replacement with the item's seeded RNG."""

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        return rng.sample(candidates, k)


@SELECTORS.register("balanced")
class LabelBalanced(Selector):
    """As many demonstrations of each label as possible (round robin), in shuffled order.

    Labels come from the task's ``label`` expression (default: the target). When k is not a
    multiple of the number of labels, which labels get the extra one is random per item.
    """

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        by_label: dict[str, list[Item]] = defaultdict(list)
        for candidate in candidates:
            by_label[candidate.label].append(candidate)
        queues = {label: rng.sample(rows, len(rows)) for label, rows in sorted(by_label.items())}
        labels = list(queues)
        rng.shuffle(labels)
        chosen: list[Item] = []
        while len(chosen) < k:
            for label in labels:
                if queues[label] and len(chosen) < k:
                    chosen.append(queues[label].pop())
        rng.shuffle(chosen)
        return chosen
