"""Few-shot draws as an axis: how much the choice of demonstrations alone moves a score.

``harness run --draws N`` evaluates every few-shot cell N times with independent
demonstration draws (the draw index is mixed into each item's selection RNG; draw 0 is
the ordinary run). Each draw is a cell of its own, stored with the selector shown as
``random draw 2``; this module groups them back into their setting and reports, over
draws, the mean, the spread (sd, min, max) and a t confidence interval of the mean, as
HELM's multi-trial evaluation does. The CI is over draws (the demonstration-choice
variance), not over items; per-draw item CIs are in ``harness compare``. A setting with a
single draw has no spread estimate: no CI and no sd (None in JSON, "—" in the table),
never the zero-width interval ``(mean, mean)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.deps import LazyModule
from harness.core.errors import HarnessError
from harness.store.store import Store

stats = LazyModule("scipy.stats")

ONE_DRAW = "1 draw: no CI over draws"
DRAW_MARK = " draw "  # selector names never contain spaces, so the stored label splits unambiguously


def split_selector(label: str) -> tuple[str, int]:
    """``'random draw 2'`` -> ``('random', 2)``; a plain selector is draw 0."""
    base, mark, draw = label.partition(DRAW_MARK)
    return (base, int(draw)) if mark else (label, 0)


@dataclass(frozen=True)
class DrawSummary:
    task: str
    prompt: str
    shots: int
    selector: str
    model: str
    metric: str
    draw_means: tuple[float, ...]  # one per draw, in draw order
    n_items: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.draw_means))

    @property
    def sd(self) -> float:
        """Sample sd over draws; NaN with a single draw (one draw says nothing about the spread)."""
        return float(np.std(self.draw_means, ddof=1)) if len(self.draw_means) > 1 else float("nan")

    def interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        """T interval of the mean over draws; None with a single draw (no spread to estimate it from)."""
        n = len(self.draw_means)
        if n < 2:
            return None
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * self.sd / np.sqrt(n)
        return (self.mean - half, self.mean + half)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval() or (None, None)
        return {"task": self.task, "prompt": self.prompt, "shots": self.shots, "selector": self.selector, "model": self.model,
                "metric": self.metric, "draws": len(self.draw_means), "n_items": self.n_items, "mean": self.mean,
                "sd": self.sd if len(self.draw_means) > 1 else None,
                "min": min(self.draw_means), "max": max(self.draw_means), "ci_low": low, "ci_high": high,
                "draw_means": list(self.draw_means)}


def draw_summaries(store: Store, run_ids: Sequence[str], metric: str | None = None) -> list[DrawSummary]:
    """Group the few-shot cells of the runs by setting and summarise their per-draw means."""
    cells = {c.cell_id: c for c in store.cells(list(run_ids))}
    sums: dict[str, list[float]] = {}
    for row in store.scores(list(run_ids)):
        cell = cells[row.cell_id]
        name = metric or cell.metrics[0]
        scores = row.scores
        if name not in scores:
            raise HarnessError(f"metric '{name}' is not stored for cell {cell.cell_id} ({cell.task}); stored: {', '.join(scores)}")
        sums.setdefault(cell.cell_id, []).append(float(scores[name]))
    groups: dict[tuple[Any, ...], dict[int, tuple[float, int]]] = {}
    for cell_id, values in sums.items():
        cell = cells[cell_id]
        if cell.shots == 0:
            continue
        base, draw = split_selector(cell.selector)
        key = (cell.task, cell.prompt, cell.shots, base, cell.model, metric or cell.metrics[0])
        groups.setdefault(key, {})[draw] = (float(np.mean(values)), len(values))
    out = []
    for (task, prompt, shots, selector, model, name), draws in sorted(groups.items()):
        ordered = [draws[d] for d in sorted(draws)]
        out.append(DrawSummary(task, prompt, shots, selector, model, name, tuple(m for m, _ in ordered), min(n for _, n in ordered)))
    return out
