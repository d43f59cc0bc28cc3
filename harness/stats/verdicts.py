"""The four words a comparison may end in, and the numbers behind each.

- **better / worse**: the two-sided test rejects Δ = 0 at α (after the stated adjustment).
- **equivalent within ±m**: TOST rejects |Δ| ≥ m at α (Schuirmann 1987); m is the user's
  ``--margin``, never a default, because what difference does not matter is the user's call.
- **inconclusive**: neither. Always with the minimum detectable effect at the achieved n (the
  |Δ| this comparison would find with 80% power) and, when a margin is given, about how many
  items would settle it either way (detect a true difference of m, or show equivalence within
  ±m when the truth is 0, each with 80% power), from the observed variance.

A verdict never reads "no difference": absence of evidence is "inconclusive".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from harness.stats.difference import Difference, TangoEngine
from harness.stats.power import equivalence_items, mcnemar_items, mcnemar_mde, normal_items, normal_mde

Code = Literal["best", "better", "worse", "equivalent", "inconclusive"]
POWER = 0.8


@dataclass(frozen=True)
class Resolution:
    """What this comparison can detect now, and what it would take to settle ``margin``."""

    mde: float  # |Δ| detectable with POWER at the achieved n (metric units)
    items_needed: int | None  # items to settle ±margin either way (None without a margin)
    n: int  # items compared
    looks: int = 1  # paired scores per item (cells pooled over the same items)


@dataclass(frozen=True)
class Verdict:
    code: Code
    text: str  # short, for a table cell
    detail: str = ""  # the numbers behind it, for a line under the table
    p_equivalence: float | None = None
    resolution: Resolution | None = None


def resolution(diff: Difference, alpha: float = 0.05, margin: float | None = None, power: float = POWER, looks: int = 1) -> Resolution:
    """MDE at the achieved n and items to settle ±margin, from the comparison's own variance.

    ``looks``: paired scores per item when cells over the same items are pooled; the variance
    (with its design effect) is per score, so the items needed are the scores needed / looks.
    """
    res = _resolution(diff, alpha, margin, power)
    if looks <= 1:
        return res
    needed = None if res.items_needed is None else max(1, math.ceil(res.items_needed / looks))
    return Resolution(res.mde, needed, max(1, diff.n // looks), looks)


def _resolution(diff: Difference, alpha: float, margin: float | None, power: float) -> Resolution:
    engine = diff.engine
    if isinstance(engine, TangoEngine):
        n_eff = engine.n
        discordance = max(engine.b + engine.c, 1.0) / max(n_eff, 1.0)  # at least one discordant item: never zero variance
        mde = mcnemar_mde(n_eff, discordance, alpha, power)
        needed = None
        if margin:
            items = max(mcnemar_items(margin, discordance, alpha, power), equivalence_items(margin, math.sqrt(discordance), alpha, power))
            needed = math.ceil(items * diff.deff)
        return Resolution(mde, needed, diff.n)
    se = diff.se
    mde = normal_mde(se, alpha, power)
    needed = None
    if margin and diff.n:
        sd = max(se, 1e-12) * math.sqrt(diff.n)
        needed = max(normal_items(margin, sd, alpha, power), equivalence_items(margin, sd, alpha, power))
    return Resolution(mde, needed, diff.n)


def points(value: float, percent: bool = True) -> str:
    """A metric difference as shown: percentage points for [0, 1] metrics."""
    return f"{100 * value:.1f}" if percent else f"{value:.3g}"


def pair_verdict(
    diff: Difference, higher_is_better: bool, *, alpha: float = 0.05, margin: float | None = None, p: float | None = None,
    p_equivalence: float | None = None, percent: bool = True, looks: int = 1,
) -> Verdict:
    """Better / worse / equivalent / inconclusive for A − B. ``p`` and ``p_equivalence`` may be
    adjusted values (Holm across tasks, ...); by default the difference's own."""
    p_value = diff.p_value if p is None else p
    res = resolution(diff, alpha, margin, looks=looks)
    p_eq = (diff.p_equivalence(margin) if margin else None) if p_equivalence is None else p_equivalence
    if diff.n == 0:
        return Verdict("inconclusive", "inconclusive", "no paired items", p_eq, res)
    if p_value < alpha:
        up = diff.estimate > 0
        better = up if higher_is_better else not up
        return Verdict("better" if better else "worse", "better" if better else "worse", f"p = {p_value:.3g} < α = {alpha}", p_eq, res)
    if margin and p_eq is not None and p_eq < alpha:
        return Verdict("equivalent", f"equivalent ±{points(margin, percent)}",
                       f"TOST p = {p_eq:.3g} < α = {alpha} for a margin of ±{points(margin, percent)}", p_eq, res)
    return Verdict("inconclusive", "inconclusive", inconclusive_detail(res, margin, percent), p_eq, res)


def inconclusive_detail(res: Resolution, margin: float | None, percent: bool = True) -> str:
    text = f"MDE ±{points(res.mde, percent)} at n={res.n}" + (f" items x {res.looks} cells" if res.looks > 1 else "")
    if margin and res.items_needed is not None:
        text += f"; would need about {res.items_needed:,} items to settle ±{points(margin, percent)}"
    return text
