"""Two cells on the same items: match by stable item id, then test the difference.

Only items scored in both cells count; the result says how many were dropped and why
(missing from one cell, or a NaN score), so a comparison never silently shrinks.
The test follows the metric's declared kind: McNemar for 0/1 scores, a paired
permutation test otherwise; the CI of the difference is a paired bootstrap either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from harness.stats import DEFAULT_RESAMPLES, Interval, items_needed, mcnemar, paired_bootstrap, paired_permutation

Kind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class Pairing:
    """Item ids in both cells (sorted), with both cells' scores, and what was left out."""

    item_ids: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def n(self) -> int:
        return len(self.item_ids)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def dropped_text(self) -> str:
        return ", ".join(f"{count} {reason}" for reason, count in self.dropped.items() if count) or "none"


def pair(a: Mapping[str, float], b: Mapping[str, float]) -> Pairing:
    """Match two item-id -> score maps; drop items missing from one side or scored NaN."""
    dropped = {
        "only in A": len(a.keys() - b.keys()),
        "only in B": len(b.keys() - a.keys()),
        "NaN score": 0,
    }
    ids, xs, ys = [], [], []
    for item in sorted(a.keys() & b.keys()):
        x, y = a[item], b[item]
        if x != x or y != y:
            dropped["NaN score"] += 1
            continue
        ids.append(item)
        xs.append(float(x))
        ys.append(float(y))
    return Pairing(tuple(ids), tuple(xs), tuple(ys), {k: v for k, v in dropped.items() if v})


@dataclass(frozen=True)
class PairedResult:
    """A - B on the paired items, oriented so that 'wins' are wins of A by the metric's direction."""

    n: int
    dropped: dict[str, int]
    mean_a: float
    mean_b: float
    diff: Interval  # mean(A - B) with its paired-bootstrap CI
    p_value: float
    test: str
    wins: int  # items where A is better (by the metric's direction)
    ties: int
    losses: int
    higher_is_better: bool
    items_needed: float  # paired items needed to detect this difference with 80% power
    warning: str | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    @property
    def a_better(self) -> bool:
        """A is better than B by the point estimate (direction-aware)."""
        return self.diff.mean > 0 if self.higher_is_better else self.diff.mean < 0


def compare_pairing(
    pairing: Pairing,
    kind: Kind,
    higher_is_better: bool = True,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedResult:
    a, b = np.asarray(pairing.a), np.asarray(pairing.b)
    diff, boot = paired_bootstrap(a, b, confidence, resamples, seed)
    if kind == "binary":
        test = mcnemar(a, b)
    else:
        test = paired_permutation(a, b, resamples=max(resamples, 1000), seed=seed)
    sign = 1 if higher_is_better else -1
    delta = sign * (a - b)
    wins, losses = int(np.sum(delta > 0)), int(np.sum(delta < 0))
    needed = items_needed(a - b)
    warning = None
    if pairing.n == 0:
        warning = "no items in common: nothing to compare"
    elif test.p_value >= 0.05 and diff.mean != 0 and pairing.n < needed:
        warning = (
            f"n={pairing.n} paired items is too few for a difference of {abs(diff.mean):.3g}: "
            f"detecting it with 80% power needs about {needed:.0f}"
        )
    return PairedResult(
        n=pairing.n, dropped=dict(pairing.dropped),
        mean_a=float(a.mean()) if a.size else float("nan"), mean_b=float(b.mean()) if b.size else float("nan"),
        diff=diff, p_value=test.p_value, test=test.method, wins=wins, ties=pairing.n - wins - losses, losses=losses,
        higher_is_better=higher_is_better, items_needed=needed, warning=warning,
    )


def compare_scores(
    a: Mapping[str, float], b: Mapping[str, float], kind: Kind, higher_is_better: bool = True, **options: float
) -> PairedResult:
    """Pair two cells' item scores and test A against B."""
    return compare_pairing(pair(a, b), kind, higher_is_better, **options)  # type: ignore[arg-type]
