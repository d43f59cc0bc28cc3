"""One task's cells ranked, with the set of cells that may be best and a verdict per cell.

Read it in order:
1. Cells are ordered by their score in the metric's declared direction (the corpus statistic
   for corpus metrics).
2. Items scored in every cell are aligned, and items (clusters when the task declares them)
   are resampled jointly for all cells (``harness.stats.best_set``): every pair gets an adjusted
   p-value that accounts for all pairs and for the best having been selected by these data.
3. The possibly-best set: cells no other cell beats with adjusted p < α (guarantee: the true
   best is outside it with probability ≤ α).
4. Per cell, against the best: Δ with its pairwise interval and p (harness.stats.difference), the
   adjusted p, and a verdict: **worse** (outside the set), **equivalent ±m** (with ``margin``:
   within m of every other cell by intersection-union TOST, Holm across cells), or
   **inconclusive** (may be best; with the detectable effect and the items a margin would need).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.analysis.aggregates import corpus_replicates
from harness.analysis.summaries import CellSummary, aligned, clusters_for
from harness.core.errors import HarnessError
from harness.scoring import get_metric
from harness.stats.basics import DEFAULT_RESAMPLES, holm
from harness.stats.best_set import BestSet, best_set, mean_replicates, null_se, stepdown_maxt
from harness.stats.difference import Difference, cluster_codes, cluster_sums, corpus_difference, difference, resample_weights
from harness.stats.paired import PairedResult, Pairing, result_of
from harness.stats.verdicts import Verdict, inconclusive_detail, pair_verdict, resolution

LARGE_DEFF = 1.5  # design effects above this are worth a line under the table


@dataclass(frozen=True)
class RankedCell:
    summary: CellSummary
    rank: int  # position, 1 = best
    may_be_best: bool  # in the possibly-best set
    vs_best: PairedResult | None  # this cell minus the best on the aligned items; None for the best itself
    p_adjusted: float | None  # vs the best, step-down max-T over all pairs
    verdict: Verdict
    beaten_by: CellSummary | None = None  # the cell that beats this one significantly (the witness)


@dataclass(frozen=True)
class TaskRanking:
    task: str
    metric: str
    higher_is_better: bool
    kind: str
    cells: list[RankedCell]
    n: int  # items scored in every cell (what the set and the pairs are computed on)
    units: int  # resampling units (clusters or items)
    clustered: bool
    alpha: float
    margin: float | None
    resamples: int
    p_pairs: np.ndarray = field(repr=False, compare=False)  # adjusted p of every pair, in ``cells`` order
    method: str = "step-down max-T (Romano-Wolf), items resampled jointly"

    @property
    def best_set(self) -> list[RankedCell]:
        return [rc for rc in self.cells if rc.may_be_best]

    @property
    def percent(self) -> bool:
        return all(abs(rc.summary.interval.mean) <= 1.0 for rc in self.cells if rc.summary.interval.mean == rc.summary.interval.mean)

    def pairs(self) -> list[dict[str, object]]:
        """Every pair's adjusted p-value (for ``--json --full`` and the report)."""
        out = []
        for i in range(len(self.cells)):
            for j in range(i + 1, len(self.cells)):
                out.append({"a": self.cells[i].summary.label, "b": self.cells[j].summary.label,
                            "a_cell": self.cells[i].summary.cell.cell_id, "b_cell": self.cells[j].summary.cell.cell_id,
                            "p_adjusted": float(self.p_pairs[i, j])})
        return out


def order_key(s: CellSummary) -> tuple[float, str, int, str, str]:
    mean = s.interval.mean if s.interval.mean == s.interval.mean else float("-inf") if s.higher_is_better else float("inf")
    return (-mean if s.higher_is_better else mean, s.cell.prompt, s.cell.shots, s.cell.model, s.cell.cell_id)


class _Aligned:
    """The task's cells on their common items, with one set of joint resamples for everything."""

    def __init__(self, order: Sequence[CellSummary], ids: list[str], confidence: float, resamples: int, seed: int) -> None:
        self.order, self.ids, self.confidence, self.resamples, self.seed = order, ids, confidence, resamples, seed
        self.kind = order[0].kind
        self.clusters = clusters_for(order, ids)
        labels = self.clusters if self.clusters is not None else np.array(ids, dtype=object).astype(str)
        _, self.units = cluster_codes(labels)
        self.labels = labels
        self.weights = resample_weights(self.units, resamples, seed)
        self.scores = np.array([[c.scores[i] for c in order] for i in ids], dtype=np.float64).reshape(len(ids), len(order))
        self.corpus = order[0].corpus is not None
        self._memo: dict[tuple[int, int], Difference] = {}
        if self.corpus:
            metric = get_metric(order[0].metric)
            self.point, self.reps, self.jack = corpus_replicates(metric, [[c.corpus[i] for i in ids] for c in order],  # type: ignore[index]
                                                                  labels, self.weights)
        else:
            self.point = self.scores.mean(axis=0) if ids else np.full(len(order), np.nan)
            sums, sizes = cluster_sums(self.scores, labels) if ids else (np.zeros((0, len(order))), np.zeros(0))
            self.sums, self.sizes = sums, sizes
            self.reps = mean_replicates(sums, sizes, self.weights) if ids else np.zeros((resamples, len(order)))

    def diff(self, i: int, j: int) -> Difference:
        """Cell i − cell j on the aligned items."""
        if (i, j) not in self._memo:
            if self.corpus:
                informative = int(np.sum(self.scores[:, i] != self.scores[:, j]))
                self._memo[(i, j)] = corpus_difference(float(self.point[i] - self.point[j]), self.reps[:, i] - self.reps[:, j],
                                                       self.jack[:, i] - self.jack[:, j], len(self.ids), self.units,
                                                       informative, self.confidence)
            else:
                self._memo[(i, j)] = difference(self.scores[:, i], self.scores[:, j], self.kind, self.clusters, self.confidence,
                                                self.resamples, self.seed, self.weights)
        return self._memo[(i, j)]

    def se_matrix(self) -> tuple[np.ndarray, float]:
        """Per pair: the standard error T is scaled by, and the bootstrap inflation factor."""
        k = len(self.order)
        if self.corpus:
            se = np.zeros((k, k))
            for i in range(k):
                for j in range(i + 1, k):
                    se[i, j] = se[j, i] = float(np.std(self.reps[:, i] - self.reps[:, j], ddof=1)) if self.resamples > 1 else 0.0
            return se, 1.0
        total = float(len(self.ids)) or 1.0
        return null_se(self.sums, total), math.sqrt(self.units / max(self.units - 1, 1))

    def pairing(self, i: int, j: int) -> Pairing:
        """The aligned items of cells i and j, with what each side lost to the alignment."""
        a, b, common = set(self.order[i].scores), set(self.order[j].scores), set(self.ids)
        dropped = {"only in A": len(a - b), "only in B": len(b - a), "not in every cell": len((a & b) - common)}
        return Pairing(tuple(self.ids), tuple(self.scores[:, i]), tuple(self.scores[:, j]), {k: v for k, v in dropped.items() if v})


def rank_task(
    cells: Sequence[CellSummary], alpha: float = 0.05, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, *,
    confidence: float = 0.95, margin: float | None = None,
) -> tuple[TaskRanking, list[str]]:
    """Rank one task's cells, find the possibly-best set and give each cell its verdict."""
    order = sorted(cells, key=order_key)
    best = order[0]
    metrics = {s.metric for s in order}
    if len(metrics) > 1:
        raise HarnessError(f"task '{best.cell.task}': cells are scored by different metrics ({', '.join(sorted(metrics))}); pass --metric")
    warnings: list[str] = []
    ids, dropped = aligned(order)
    for label, count in dropped.items():
        warnings.append(f"{best.cell.task}: {label}: {count} item(s) not scored in every cell are left out of the comparison "
                        f"(it uses the {len(ids)} items all {len(order)} cells have)")
    data = _Aligned(order, ids, confidence, resamples, seed)
    if dropped and ids:  # cells differ in their items (an unfinished cell): rank on the shared items the verdicts rest on
        shared_order = _order_on_shared(order, data.point, best.higher_is_better)
        if [id(c) for c in shared_order] != [id(c) for c in order]:
            order, best = shared_order, shared_order[0]
            data = _Aligned(order, ids, confidence, resamples, seed)
    k = len(order)
    raw = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i + 1, k):
            raw[i, j] = raw[j, i] = data.diff(i, j).p_value
    se, inflate = data.se_matrix()
    adjusted = stepdown_maxt(np.asarray(data.point, dtype=np.float64), data.reps, se, raw, inflate) if k > 1 else np.full((1, 1), np.nan)
    chosen = best_set(np.asarray(data.point, dtype=np.float64), adjusted, best.higher_is_better, alpha, resamples)
    percent = all(abs(v) <= 1.0 for v in data.point if v == v)
    equivalence = _equivalence(data, chosen, margin, best.higher_is_better) if margin else {}
    ranked: list[RankedCell] = [RankedCell(best, 1, 0 in chosen.members, None, None, Verdict("best", "best"))]
    for i in range(1, k):
        d = data.diff(i, 0)
        result = result_of(d, data.pairing(i, 0), best.higher_is_better, float(data.point[i]), float(data.point[0]))
        witness = chosen.witness(i)
        if i not in chosen.members and witness is not None:
            j, p = witness
            verdict = Verdict("worse", "worse", f"adjusted p = {p:.3g}")
            beaten_by = order[j]
        elif i in equivalence and equivalence[i] < alpha:
            verdict = pair_verdict(d, best.higher_is_better, alpha=alpha, margin=margin, p=1.0, p_equivalence=equivalence[i], percent=percent)
            beaten_by = None
        else:
            res = resolution(d, alpha, margin)
            verdict = Verdict("inconclusive", "inconclusive", inconclusive_detail(res, margin, percent), equivalence.get(i), res)
            beaten_by = None
        ranked.append(RankedCell(order[i], i + 1, i in chosen.members, result, float(adjusted[i, 0]), verdict, beaten_by))
    ranking = TaskRanking(best.cell.task, best.metric, best.higher_is_better, best.kind, ranked, len(ids), data.units,
                          data.clusters is not None, alpha, margin, resamples, adjusted)
    if data.clusters is not None:
        deffs = [rc.vs_best.difference.deff for rc in ranked[1:] if rc.vs_best is not None]
        if deffs and max(deffs) > LARGE_DEFF:
            warnings.append(f"{ranking.task}: items come in {data.units} clusters; design effect up to {max(deffs):.2f} on the "
                            f"differences (the {len(ids)} items count like {len(ids) / max(deffs):.0f} independent ones)")
    return ranking, warnings


def _order_on_shared(order: Sequence[CellSummary], point: np.ndarray, higher_is_better: bool) -> list[CellSummary]:
    """The cells ordered by their score on the shared items: when one cell lacks items, its own
    mean and the others' are over different items, and the cell called best must be the best on
    the items every pair is tested on (else a Δ vs best could be positive)."""
    sign = -1.0 if higher_is_better else 1.0
    position = {id(c): i for i, c in enumerate(order)}
    return sorted(order, key=lambda c: (sign * float(point[position[id(c)]]), position[id(c)]))


def _equivalence(data: _Aligned, chosen: BestSet, margin: float, higher_is_better: bool) -> dict[int, float]:
    """Per cell (except the best): Holm-adjusted p of "within ±margin of every other cell".

    Intersection-union (Berger 1982): the cell is within the margin of the best when, for every
    other cell j, H0 "j beats it by at least the margin" is rejected; the IUT p is the largest
    of those one-sided p-values. Holm then controls the familywise error across cells.
    """
    k = len(data.order)
    raw: dict[int, float] = {}
    for i in range(1, k):
        if i not in chosen.members:
            continue
        raw[i] = max(data.diff(i, j).p_not_worse_by(margin, higher_is_better) for j in range(k) if j != i)
    adjusted = holm(list(raw.values()))
    return dict(zip(raw, adjusted))
