"""Few-shot example selectors: which demonstrations an item gets.

Every selector is built once per (task, pool) and asked per item with that item's own RNG,
seeded from (run seed, item id). So the demonstrations of an item do not depend on which
other items are evaluated, on their order or on the batch size, and the evaluated item (same
id or same input) is never its own demonstration, nor is any row of its group (the task's
``group:``: twin sentences, the same passage, the same source question).
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.fewshot.embeddings import encoder_for, pool_embeddings
from harness.prompts.template import reads_shots
from harness.tasks.task import Item


class Selector(ABC):
    """Chooses ``k`` demonstrations for an item from a fixed pool."""

    def __init__(self, pool: Sequence[Item]) -> None:
        self.pool = list(pool)

    def candidates(self, item: Item) -> list[Item]:
        """The pool rows ``item`` may be shown: not itself (same id or same input) and not of its group (the task's
        ``group:``, e.g. the same passage). Every selector chooses from these, in pool order."""
        return [p for p in self.pool if p.id != item.id and p.input != item.input and (item.group is None or p.group != item.group)]

    def select(self, item: Item, k: int, rng: random.Random) -> list[Item]:
        if k == 0:
            return []
        candidates = self.candidates(item)
        if k > len(candidates):
            why = " (other than the item itself and rows of its group)" if item.group is not None else ""
            raise HarnessError(f"{k}-shot needs {k} demonstrations but the few-shot pool has only {len(candidates)} usable rows{why}")
        return self.choose(item, candidates, k, rng)

    @abstractmethod
    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        """Pick ``k`` of ``candidates`` (which already exclude the item itself)."""


def plugin_selector(value: object, name: str) -> type[Selector]:
    """A ``harness.selectors`` entry point's object: a Selector subclass (built once per pool)."""
    if not (isinstance(value, type) and issubclass(value, Selector)):
        raise TypeError(f"expected a subclass of harness.fewshot.selectors.Selector, got {value!r}")
    return value


# a selector class, or any callable that builds one from the pool (``partial(KNN, order=...)``)
SelectorFactory = Callable[[Sequence[Item]], Selector]
SELECTORS: Registry[SelectorFactory] = Registry("selector", "harness.selectors", plugin_selector)


def register_selector(name: str) -> Callable[[type[Selector]], type[Selector]]:
    """Class decorator: a built-in selector under ``name`` (third parties use the entry-point group)."""

    def decorate(cls: type[Selector]) -> type[Selector]:
        SELECTORS.add(name, cls)
        return cls

    return decorate


def item_rng(seed: int, item_id: str) -> random.Random:
    """An RNG private to one item, stable across processes (no Python hash randomisation)."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_rng(seed: int, item_id: str, draw: int) -> random.Random:
    """The item's RNG for demonstration draw ``draw`` (``--draws``); draw 0 is ``item_rng`` itself,
    so a run without draws selects exactly what it did before."""
    return item_rng(seed, item_id) if draw == 0 else item_rng(seed, f"{item_id}\x00draw\x00{draw}")


@register_selector("first_k")
class FirstK(Selector):
    """The first k pool rows, in file order: the classic fixed prompt."""

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        return candidates[:k]


@register_selector("random")
class RandomK(Selector):
    """k rows drawn without replacement with the item's seeded RNG."""

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        return rng.sample(candidates, k)


@register_selector("balanced")
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


# -- similarity-based selection (KATE: Liu et al. 2022; MMR: Carbonell & Goldstein 1998) ----
ORDERS = ("selected", "similar_last", "shuffled", "label_alternating")


class _Similarity(Selector):
    """Base of knn/mmr: embeds the pool once (disk-cached) and each evaluated input on demand.

    ``order`` arranges the chosen demonstrations: ``selected`` (the selection order: most
    similar first for knn), ``similar_last`` (most similar right before the item, as KATE
    recommends), ``shuffled`` (the item's seeded RNG), ``label_alternating`` (round robin
    over labels, each label's rows in selection order).
    """

    encoder_preference: str = "auto"

    def __init__(self, pool: Sequence[Item], order: str = "selected") -> None:
        super().__init__(pool)
        self.order = order
        texts = [p.input for p in self.pool]
        self.encoder = encoder_for(texts, self.encoder_preference)
        self.vectors = pool_embeddings(texts, self.encoder) if self.pool else None
        self._index = {id(p): i for i, p in enumerate(self.pool)}
        self._queries: dict[str, Any] = {}

    def query(self, item: Item) -> Any:
        if item.input not in self._queries:
            self._queries[item.input] = self.encoder.encode([item.input])[0]
        return self._queries[item.input]

    def similarities(self, item: Item, candidates: list[Item]) -> Any:
        """Cosine similarity of each candidate to the item, in candidate order."""
        assert self.vectors is not None
        rows = [self._index[id(c)] for c in candidates]
        return self.vectors[rows] @ self.query(item)

    def choose(self, item: Item, candidates: list[Item], k: int, rng: random.Random) -> list[Item]:
        sims = self.similarities(item, candidates)
        picked = self.pick(candidates, sims, k)
        return arrange(picked, [float(sims[i]) for i in picked], candidates, self.order, rng)

    @abstractmethod
    def pick(self, candidates: list[Item], sims: Any, k: int) -> list[int]:
        """Indices into ``candidates`` of the k chosen rows, in selection order."""


def arrange(picked: list[int], sims: list[float], candidates: list[Item], order: str, rng: random.Random) -> list[Item]:
    """Put the picked rows (indices into ``candidates``, with their similarities) in ``order``."""
    if order == "selected":
        ordered = picked
    elif order == "similar_last":  # stable: equal similarities keep selection order
        ordered = [i for _, i in sorted(zip(sims, picked), key=lambda pair: pair[0])]
    elif order == "shuffled":
        ordered = list(picked)
        rng.shuffle(ordered)
    elif order == "label_alternating":
        queues: dict[str, list[int]] = defaultdict(list)
        for i in picked:  # labels in order of first appearance, each queue in selection order
            queues[candidates[i].label].append(i)
        ordered = []
        while len(ordered) < len(picked):
            for queue in queues.values():
                if queue:
                    ordered.append(queue.pop(0))
    else:
        raise HarnessError(f"unknown demonstration order '{order}'; known: {', '.join(ORDERS)}")
    return [candidates[i] for i in ordered]


@register_selector("knn")
class KNN(_Similarity):
    """The k pool rows most similar to the evaluated input (ties: pool order)."""

    def pick(self, candidates: list[Item], sims: Any, k: int) -> list[int]:
        import numpy as np

        return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]


@register_selector("mmr")
class MMR(_Similarity):
    """Maximal marginal relevance: similar to the input but not to each other.

    Greedy: each step takes argmax of ``lam * sim(item, d) - (1 - lam) * max sim(d, chosen)``,
    so near-duplicate demonstrations do not crowd out the rest (lam = 0.5, as LangChain).
    """

    lam: float = 0.5

    def pick(self, candidates: list[Item], sims: Any, k: int) -> list[int]:
        import numpy as np

        assert self.vectors is not None
        vectors = self.vectors[[self._index[id(c)] for c in candidates]]
        chosen: list[int] = []
        redundancy = np.full(len(candidates), -np.inf)
        for _ in range(k):
            score = self.lam * sims - (1 - self.lam) * np.where(np.isfinite(redundancy), redundancy, 0.0)
            score[chosen] = -np.inf
            best = int(np.argmax(score))  # first maximum: deterministic ties
            chosen.append(best)
            redundancy = np.maximum(redundancy, vectors @ vectors[best])
        return chosen


# ``knn`` / ``mmr`` keep the selection order; each other order is a name of its own, e.g. ``knn_similar_last``
for _name, _kind in (("knn", KNN), ("mmr", MMR)):
    for _order in ORDERS[1:]:
        SELECTORS.add(f"{_name}_{_order}", partial(_kind, order=_order))


# -- what a k-shot setting does not say by itself ---------------------------------------------
def pool_is_split_warning(task: Any, split: str, fewshot_split: str) -> str | None:
    """One line when the few-shot pool is the evaluated split itself (the same file): allowed, but said."""
    if not (task.has_split(split) and task.has_split(fewshot_split)):
        return None
    if split != fewshot_split and task.split_label(split) != task.split_label(fewshot_split):
        return None
    name = task.group or task.name  # members of a group task (mmlu_<subject>) share the group's files: one line
    guard = f" nor one of its group `{task.spec.group}`" if task.spec.group else ""
    return (f"task '{name}': the few-shot pool is the evaluated split itself ({task.split_label(split)}): demonstrations are other "
            f"evaluated items (never the item itself{guard}), so their gold answers appear in other items' prompts")


def unshown_shots_warning(template: Any, shots: Sequence[int]) -> str | None:
    """One line when k > 0 and the template never reads ``shots``: such cells render their zero-shot prompt."""
    few = sorted(k for k in shots if k > 0)
    if not few or reads_shots(template):
        return None
    settings = ", ".join(f"{k}-shot" for k in few)
    return (f"prompt template {template.path} never reads `shots`: its {settings} cells choose demonstrations but render "
            "the zero-shot prompt (add a `{% for s in shots %}` loop, or run it at --shots 0)")


def demonstration_warnings(task: Any, templates: Sequence[Any], shots: Sequence[int], split: str, fewshot_split: str) -> list[str]:
    """The lines ``harness validate`` and ``harness run`` print for a task's k-shot settings (none at k = 0)."""
    if not any(k > 0 for k in shots):
        return []
    lines = [pool_is_split_warning(task, split, fewshot_split), *(unshown_shots_warning(t, shots) for t in templates)]
    return [line for line in lines if line]
