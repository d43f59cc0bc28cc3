"""Racing K cells on the same items: stop evaluating a cell once another is confidently better.

All cells are scored on the same items in one seeded random order (``seeded_order``), in rounds.
After each round every pair of cells (i, j) has an anytime-valid confidence sequence
(``harness.stats.sequential``) for the mean paired difference mu_i - mu_j over the items both
have, at level alpha / P with P = K(K - 1)/2 (Bonferroni over every pair of the starting cells;
a pair keeps its share after a cell is eliminated, and an eliminated cell's sequences stay in the
family, frozen). By the union bound, with probability >= 1 - alpha every pair's sequence contains
its true difference at every round at once, whatever the stopping rule. On that event:

- a cell is eliminated only when some other cell is truly better (direction-aware), so a best
  cell (every cell tied for best) is never eliminated and a declared winner is a best cell;
- a declared equivalence set (every surviving pair's sequence inside (-m, m)) really is within
  the margin pairwise, and contains a best cell;
- a race stopped by its budget still contains every best cell among its survivors.

Assumptions: scores lie in the known ``bounds``; the item order does not depend on the scores
(items exchangeable in the seeded order). With ``population=N`` the truth is the mean over the N
items of the benchmark (sampling without replacement, so the sequences shrink to the full-run
answer as the items run out); without it, items are treated as i.i.d. draws from a population.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.stats.sequential import METHOD, CSState, extend, put, start, take

Status = Literal["racing", "eliminated", "winner", "equivalent", "undecided"]
Reason = Literal["racing", "winner", "equivalent", "budget", "exhausted"]


def seeded_order(n: int, seed: int) -> NDArray[np.intp]:
    """The order in which to score n items: a uniformly random permutation fixed by ``seed``."""
    return np.random.default_rng(seed).permutation(n)


@dataclass(frozen=True)
class PairBound:
    """The CS of mu_a - mu_b (metric units) on the first ``n`` items both cells have."""

    a: str
    b: str
    n: int
    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class CellOutcome:
    """Where a cell stands: ``round`` and ``items`` say when it stopped (its latest for survivors)."""

    cell: str
    status: Status
    round: int
    items: int
    mean: float
    beaten_by: str | None = None
    difference: tuple[float, float] | None = None  # CS of mu_beaten_by - mu_cell when it was eliminated
    reason: str = ""


@dataclass(frozen=True)
class RaceState:
    round: int
    reason: Reason
    cells: tuple[CellOutcome, ...]
    pairs: tuple[PairBound, ...]
    evaluations: int  # item scores received over all cells
    alpha: float
    pair_alpha: float
    margin: float | None
    direction: int
    method: str = METHOD

    @property
    def survivors(self) -> tuple[str, ...]:
        return tuple(c.cell for c in self.cells if c.status != "eliminated")

    @property
    def eliminated(self) -> tuple[str, ...]:
        return tuple(c.cell for c in self.cells if c.status == "eliminated")

    @property
    def stopped(self) -> bool:
        return self.reason != "racing"

    @property
    def decided(self) -> bool:
        """A winner or an equivalence set; a budget or exhausted stop leaves the survivors open."""
        return self.reason in ("winner", "equivalent")

    def outcome(self, cell: str) -> CellOutcome:
        return next(c for c in self.cells if c.cell == cell)

    def guarantee(self) -> str:
        pairs = len(self.pairs)
        text = (
            f"with probability >= {1 - self.alpha:.0%}, at every round and for all {pairs} pairs at once "
            f"(confidence sequences at {self.pair_alpha:.2g} each, Bonferroni): every eliminated cell is worse than "
            "the cell that eliminated it, so the best cell is never eliminated"
        )
        if self.margin is not None:
            text += f", and an equivalence set is within ±{self.margin:g} pairwise"
        return text + "; assumes scores within their bounds and items in a seeded random order"


class Race:
    """A race among ``cells``; feed it rounds with ``update``, read ``state``.

    ``direction`` is +1 when a higher score is better, -1 when lower is. ``bounds`` are the
    scores' known range. ``population`` is the number of items available (see the module's note);
    ``max_items`` stops when every survivor has that many items, ``max_evaluations`` when the
    scores received reach it.
    """

    def __init__(
        self, cells: Sequence[str], alpha: float = 0.05, margin: float | None = None, direction: int = 1,
        bounds: tuple[float, float] = (0.0, 1.0), population: int | None = None,
        max_items: int | None = None, max_evaluations: int | None = None, truncation: float = 0.5,
    ) -> None:
        names = tuple(cells)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a race needs at least two distinct cells, got {names}")
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 (higher is better) or -1, got {direction}")
        if margin is not None and not margin > 0:
            raise ValueError(f"margin must be positive, got {margin}")
        if not bounds[1] > bounds[0]:
            raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
        self.names = names
        self.alpha, self.margin, self.direction = alpha, margin, direction
        self.lo, self.width = float(bounds[0]), float(bounds[1] - bounds[0])
        self.population, self.max_items, self.max_evaluations = population, max_items, max_evaluations
        self.pair_index = list(combinations(range(len(names)), 2))
        self.pair_of = {pair: p for p, pair in enumerate(self.pair_index)}
        self.pair_columns = (np.array([i for i, _ in self.pair_index]), np.array([j for _, j in self.pair_index]))
        self.pair_alpha = alpha / len(self.pair_index)
        self.cs: CSState = start(len(self.pair_index), self.pair_alpha, population, truncation)
        self.diff_sum = np.zeros(len(self.pair_index))  # sum of raw differences, for the estimate
        self.scores: list[list[NDArray[np.float64]]] = [[] for _ in names]
        self.counts = np.zeros(len(names), dtype=np.int64)
        self.sums = np.zeros(len(names))
        self.round = 0
        self.reason: Reason = "racing"
        self.outcomes: dict[int, CellOutcome] = {}  # eliminated cells, frozen when they stopped
        self._state = self._snapshot()

    @property
    def state(self) -> RaceState:
        return self._state

    def update(self, scores: Mapping[str, ArrayLike]) -> RaceState:
        """One round: new per-item scores for surviving cells, in the race's item order."""
        if self.reason != "racing":
            raise ValueError(f"the race has stopped ({self.reason})")
        index = {name: k for k, name in enumerate(self.names)}
        for name, values in scores.items():
            k = index.get(name)
            if k is None:
                raise ValueError(f"unknown cell {name!r}")
            if k in self.outcomes:
                raise ValueError(f"cell {name!r} was eliminated in round {self.outcomes[k].round}")
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            if not np.all((v >= self.lo) & (v <= self.lo + self.width)):
                raise ValueError(f"scores of {name!r} must be finite and within [{self.lo}, {self.lo + self.width}]")
            if self.population is not None and self.counts[k] + v.size > self.population:
                raise ValueError(f"cell {name!r} would have more than the {self.population} items")
            self.scores[k].append(v)
            self.counts[k] += v.size
            self.sums[k] += v.sum()
        self.round += 1
        self._extend_pairs()
        self._eliminate()
        self._check_stop()
        self._state = self._snapshot()
        return self._state

    def stop(self, reason: Reason = "budget") -> RaceState:
        """End a race that is still running for a reason it does not count itself (a budget of requests or tokens):
        the survivors stay undecided, with every best cell among them on the coverage event."""
        if self.reason == "racing":
            self.reason = reason
            self._state = self._snapshot()
        return self._state

    def _extend_pairs(self) -> None:
        """Feed every pair the items both its cells now have, grouping pairs by how many are new."""
        full = [np.concatenate(s) if s else np.zeros(0) for s in self.scores]
        common = np.array([min(self.counts[i], self.counts[j]) for i, j in self.pair_index])
        new = common - self.cs.t
        first, second = self.pair_columns
        for m in np.unique(new[new > 0]):
            group = np.flatnonzero(new == m)
            seen = self.cs.t[group]
            if np.all(seen == seen[0]):  # the usual round: one block of items for every pair in the group
                s = int(seen[0])
                block = np.stack([f[s:s + m] if f.size >= s + m else np.zeros(m) for f in full])
                d = block[first[group]] - block[second[group]]
            else:
                d = np.stack([full[first[p]][self.cs.t[p]:common[p]] - full[second[p]][self.cs.t[p]:common[p]] for p in group])
            part, _, _ = extend(take(self.cs, group), (d + self.width) / (2 * self.width))
            self.cs = put(self.cs, group, part)
            self.diff_sum[group] += d.sum(axis=1)

    def _bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each pair's CS of mu_i - mu_j in metric units."""
        return -self.width + 2 * self.width * self.cs.lower, -self.width + 2 * self.width * self.cs.upper

    def _better(self) -> NDArray[np.float64]:
        """G[a, b]: the lower bound of direction * (mu_a - mu_b); a beats b when it is > 0."""
        lower, upper = self._bounds()
        g = np.full((len(self.names),) * 2, -np.inf)
        for p, (i, j) in enumerate(self.pair_index):
            g[i, j], g[j, i] = (lower[p], -upper[p]) if self.direction == 1 else (-upper[p], lower[p])
        return g

    def _eliminate(self) -> None:
        alive = [k for k in range(len(self.names)) if k not in self.outcomes]
        g = self._better()
        beaten = [k for k in alive if g[:, k].max() > 0]
        if len(beaten) == len(alive):
            # only possible off the coverage event (the sequences are not mutually consistent):
            # keep the survivors with the best observed mean rather than none
            means = self.direction * self.sums[alive] / np.maximum(self.counts[alive], 1)
            keep = {alive[k] for k in np.flatnonzero(means == means.max())}
            beaten = [k for k in beaten if k not in keep]
        lower, upper = self._bounds()
        for k in beaten:
            w = int(np.argmax(g[:, k]))
            p = self._pair(w, k)
            sign = 1.0 if self.pair_index[p][0] == w else -1.0
            lo, hi = sorted((sign * lower[p], sign * upper[p]))
            self.outcomes[k] = CellOutcome(
                self.names[k], "eliminated", self.round, int(self.counts[k]), self._mean(k), self.names[w], (float(lo), float(hi)),
                f"{self.names[w]} is better by [{lo:+.4g}, {hi:+.4g}] (round {self.round}, {int(self.cs.t[p])} items)",
            )

    def _check_stop(self) -> None:
        alive = [k for k in range(len(self.names)) if k not in self.outcomes]
        lower, upper = self._bounds()
        if len(alive) == 1:
            self.reason = "winner"
        elif self.margin is not None and all(
            lower[self._pair(i, j)] > -self.margin and upper[self._pair(i, j)] < self.margin for i, j in combinations(alive, 2)
        ):
            self.reason = "equivalent"
        elif self.population is not None and all(self.counts[k] >= self.population for k in alive):
            self.reason = "exhausted"
        elif (self.max_items is not None and all(self.counts[k] >= self.max_items for k in alive)) or (
            self.max_evaluations is not None and int(self.counts.sum()) >= self.max_evaluations
        ):
            self.reason = "budget"

    def _pair(self, a: int, b: int) -> int:
        return self.pair_of[(min(a, b), max(a, b))]

    def _mean(self, k: int) -> float:
        return float(self.sums[k] / self.counts[k]) if self.counts[k] else float("nan")

    def _snapshot(self) -> RaceState:
        status: Status = "undecided"
        if self.reason in ("racing", "winner", "equivalent"):
            status = self.reason
        why = {
            "racing": "still racing", "winner": "the only cell left", "equivalent": f"within ±{self.margin} of every other survivor",
            "budget": "the budget ran out before a decision", "exhausted": "every item was scored before a decision",
        }[self.reason]
        cells = tuple(
            self.outcomes.get(k) or CellOutcome(name, status, self.round, int(self.counts[k]), self._mean(k), reason=why)
            for k, name in enumerate(self.names)
        )
        lower, upper = self._bounds()
        pairs = tuple(
            PairBound(self.names[i], self.names[j], int(self.cs.t[p]), float(self.diff_sum[p] / self.cs.t[p]) if self.cs.t[p] else float("nan"),
                      float(lower[p]), float(upper[p]))
            for p, (i, j) in enumerate(self.pair_index)
        )
        return RaceState(self.round, self.reason, cells, pairs, int(self.counts.sum()), self.alpha, self.pair_alpha, self.margin, self.direction)
