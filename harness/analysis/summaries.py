"""One cell's score from its stored items: the number, its interval, and how many items count.

Nothing here silently changes n. An item whose score is NaN (a metric that could not score the
response, a metric a later pass never wrote) is *unscorable*: by default it is scored as the
metric's worst value (0 for accuracy: a failure is not an answer), or, with
``unscorable="exclude"``, dropped; either way the count is kept with the cell and printed.
Metrics without a worst value (TER is unbounded) cannot be scored wrong, so their unscorable
items are excluded and counted.

Intervals (all at ``confidence``):
- 0/1 metrics: Wilson; with declared clusters, Wilson at the effective n = n / design effect
  (Korn & Graubard 1998), so clustered items are not counted as independent evidence.
- continuous item means: studentised bootstrap over clusters (items when none are declared).
- corpus statistics: BCa bootstrap of the corpus statistic over clusters (items).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.analysis.aggregates import corpus_interval, corpus_items
from harness.scoring import CorpusItem, Metric, get_metric
from harness.stats.basics import DEFAULT_RESAMPLES, Interval, wilson
from harness.stats.difference import BootstrapTEngine, cluster_sums, design_effect, resample_weights
from harness.store import Store, StoredCell

Unscorable = Literal["wrong", "exclude"]
UNSCORABLE_CHOICES = ("wrong", "exclude")


@dataclass(frozen=True)
class CellSummary:
    cell: StoredCell
    metric: str
    higher_is_better: bool
    interval: Interval
    scores: dict[str, float]  # item id -> score (the pairing key for comparisons), after the unscorable policy
    kind: str = "binary"
    clusters: dict[str, str] | None = None  # item id -> cluster, when the task declares one
    unscorable: int = 0  # items whose score was NaN
    unscorable_policy: str = "wrong"  # what was done with them: wrong | exclude | excluded (no worst value)
    corpus: dict[str, CorpusItem] | None = None  # corpus metrics: item id -> (prediction, references)
    deff: float = 1.0  # design effect of the clusters on this cell's mean (1 without clusters)
    not_scored: int = 0  # stored items that carry no score for this metric at all (it was never computed for them)

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def missing(self) -> int:
        """Planned items never stored (an interrupted run): not scored at all, not paired."""
        excluded = self.unscorable if self.unscorable_policy != "wrong" else 0
        return max(0, self.cell.n_planned - len(self.scores) - excluded - self.not_scored)

    @property
    def is_corpus(self) -> bool:
        return self.corpus is not None

    @property
    def setting(self) -> str:
        """Everything but the prompt: the unit over which prompt spread is measured."""
        selector = "" if self.cell.selector == "none" else f" {self.cell.selector}"
        return f"{self.cell.model} · {self.cell.shots}-shot{selector}"

    @property
    def label(self) -> str:
        return f"{self.cell.prompt} · {self.setting}"

    def cluster_of(self, item: str) -> str:
        return self.clusters.get(item, item) if self.clusters else item


Table = dict[tuple[str, str], dict[str, Any]]  # (run id, cell id) -> item id -> value


def stored_items(store: Store, run_ids: Sequence[str]) -> tuple[Table, Table]:
    """One pass over the runs' items: (run id, cell id) -> item id -> metric -> score, and -> cluster
    (for items stored with one)."""
    scores: Table = defaultdict(dict)
    clusters: Table = defaultdict(dict)
    for row in store.scores(run_ids):
        key = (row.run_id, row.cell_id)
        scores[key][row.item_id] = row.scores
        if row.cluster is not None:
            clusters[key][row.item_id] = row.cluster
    return scores, clusters


def cell_scores(store: Store, run_ids: Sequence[str]) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(run id, cell id) -> item id -> metric -> score."""
    return stored_items(store, run_ids)[0]


def worst_value(metric: Metric) -> float | None:
    """The score a failure gets: the metric's declared worst, or 0/1 for a 0/1 metric by direction."""
    if metric.worst is not None:
        return metric.worst
    if metric.kind == "binary":
        return 0.0 if metric.higher_is_better else 1.0
    return None


def summarize(
    store: Store, run_ids: Sequence[str], metric: str | None = None, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, unscorable: Unscorable = "wrong",
) -> list[CellSummary]:
    """One summary per cell, on ``metric`` or each cell's main (first) metric."""
    if unscorable not in UNSCORABLE_CHOICES:
        raise ValueError(f"unscorable must be one of {UNSCORABLE_CHOICES}, got {unscorable!r}")
    scores, clusters = stored_items(store, run_ids)
    out = []
    for cell in store.cells(run_ids):
        name = metric or cell.metrics[0]
        definition = get_metric(name, "--metric")
        items = scores.get((cell.run_id, cell.cell_id), {})
        worst = worst_value(definition)
        policy = unscorable if (unscorable == "exclude" or worst is not None) else "excluded (no worst value)"
        values: dict[str, float] = {}
        failed = absent = 0
        for item, s in items.items():
            if name not in s:  # never scored by this metric (acc_calibrated before `harness calibrate`): not a failure
                absent += 1
                continue
            v = s[name]
            if v == v:
                values[item] = float(v)
                continue
            failed += 1
            if policy == "wrong":
                values[item] = float(worst)  # type: ignore[arg-type]
        cell_clusters = clusters.get((cell.run_id, cell.cell_id)) or None
        corpus = None
        if definition.corpus is not None:
            corpus = {k: v for k, v in corpus_items(store, cell).items() if k in values}
        interval, deff = cell_interval(definition, values, corpus, cell_clusters, confidence, resamples, seed)
        out.append(CellSummary(cell, name, definition.higher_is_better, interval, values, definition.kind, cell_clusters,
                               failed, policy, corpus, deff, absent))
    return out


def cell_interval(
    metric: Metric, values: dict[str, float], corpus: dict[str, CorpusItem] | None, clusters: dict[str, str] | None,
    confidence: float, resamples: int, seed: int,
) -> tuple[Interval, float]:
    """The cell's score and its interval (see the module docstring); also the design effect."""
    ids = list(values)
    n = len(ids)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "none"), 1.0
    labels = np.array([clusters.get(i, i) if clusters else i for i in ids], dtype=object).astype(str)
    x = np.array([values[i] for i in ids], dtype=np.float64)
    sums, sizes = cluster_sums(x, labels) if clusters else (x, np.ones_like(x))
    deff = design_effect(x, sums, sizes) if clusters else 1.0
    if corpus is not None:
        return corpus_interval(metric, [corpus[i] for i in ids], confidence, resamples, seed, labels if clusters else None), deff
    binary = metric.kind == "binary" and bool(np.all(np.isin(x, (0.0, 1.0))))
    if binary:
        n_eff = n / deff  # Wilson at the effective sample size: the same proportion, clusters counted once
        w = wilson(float(x.mean()) * n_eff, n_eff, confidence)
        mean = float(x.mean())
        method = "wilson" if deff <= 1 else f"wilson, effective n {n / deff:.0f} (design effect {deff:.2f})"
        return Interval(mean, w.low, w.high, n, method), deff
    engine = BootstrapTEngine(sums, sizes, resample_weights(sums.size, resamples, seed))
    low, high = engine.interval(confidence)
    low, high = max(low, float(x.min())), min(high, float(x.max()))  # a mean cannot leave the data's range
    return Interval(float(x.mean()), low, high, n, "bootstrap-t" + (" over clusters" if clusters else "")), deff


def aligned(cells: Sequence[CellSummary]) -> tuple[list[str], dict[str, int]]:
    """Item ids scored in every cell (sorted), and per cell label how many of its items fall out."""
    common = set.intersection(*(set(c.scores) for c in cells)) if cells else set()
    ids = sorted(common)
    dropped = {c.label: len(c.scores) - len(ids) for c in cells if len(c.scores) > len(ids)}
    return ids, dropped


def clusters_for(cells: Sequence[CellSummary], ids: Sequence[str]) -> np.ndarray | None:
    """The cluster of each item (from the first cell that has clusters), or None when none are declared."""
    source = next((c for c in cells if c.clusters), None)
    if source is None:
        return None
    return np.array([source.cluster_of(i) for i in ids], dtype=object).astype(str)


def describe_unscorable(s: CellSummary) -> str | None:
    """One line for a cell with unscorable or unscored items (None when there are none)."""
    parts = []
    stored = len(s.scores) + (0 if s.unscorable_policy == "wrong" else s.unscorable) + s.not_scored
    if s.unscorable:
        done = {"wrong": "scored as wrong", "exclude": "excluded"}.get(s.unscorable_policy, s.unscorable_policy)
        parts.append(f"{s.unscorable} of {stored} items unscorable ({done})")
    if s.not_scored:
        parts.append(f"{s.not_scored} of {stored} items carry no {s.metric} score (never computed for them; left out)")
    return f"{s.cell.task}: {s.label}: " + "; ".join(parts) if parts else None


def json_safe(value: Any) -> Any:
    """NaN and ±inf as None, recursively: ``--json`` output is strict JSON that any parser reads."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
