"""Which cells may be the best: a step-down max-T test over every pair, items resampled jointly.

Testing each cell against the *observed* best with Holm ignores that the best was picked by the
same data (familywise error 0.16 with 20 cells under the global null), and rank groups built
that way are not transitive. Here every pair (i, j) is a hypothesis μ_i = μ_j, tested with the
Romano–Wolf step-down max-T procedure (Romano & Wolf 2005, Econometrica 73:1237):

1. T_ij = (est_i − est_j) / se_ij for every pair. For item-mean metrics se_ij is the null
   standard error √(Σ_c D_c²)/N (D_c: the cluster's sum of item differences; for 0/1 scores and
   no clusters T_ij is McNemar's (b − c)/√(b + c)); for corpus statistics the bootstrap sd.
2. Items (clusters) are resampled jointly for all cells, B times; T*_ij = (Δ*_ij − Δ_ij)/se_ij
   (inflated by √(C/(C−1)) for mean metrics, the bootstrap's small-sample shrinkage).
3. Pairs sorted by |T| descending; the k-th gets p̃_k = max_{l≤k} P*(max_{h≥l} |T*_h| ≥ |T_l|).
4. Each adjusted p is floored by the pair's own p-value (harness.stats.difference: Tango / bootstrap-t /
   BCa), so no pair is ever more significant after adjustment than alone.

Guarantee: the probability of any false pairwise claim is at most α (strong control), so the
true best cell is left out of the set with probability at most α, and under the global null the
set is all cells with probability at least 1 − α. tests/stats/test_simulation.py measures both.
A cell is outside the set when some cell beats it with adjusted p < α: the set is always
explained by a named witness, so there are no non-transitive "groups".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BestSet:
    """Adjusted pairwise p-values (K × K, symmetric, NaN diagonal) and the cells that may be best."""

    estimates: tuple[float, ...]
    higher_is_better: bool
    p_adjusted: np.ndarray
    members: frozenset[int]
    alpha: float
    resamples: int
    method: str = "step-down max-T (Romano-Wolf), items resampled jointly"

    def better(self, j: int, i: int) -> bool:
        """Cell j's estimate beats cell i's (direction-aware)."""
        a, b = self.estimates[j], self.estimates[i]
        return a > b if self.higher_is_better else a < b

    def witness(self, i: int) -> tuple[int, float] | None:
        """The better cell with the smallest adjusted p against ``i``, when it is significant."""
        found = [(float(self.p_adjusted[i, j]), j) for j in range(len(self.estimates)) if j != i and self.better(j, i)]
        if not found:
            return None
        p, j = min(found)
        return (j, p) if p < self.alpha else None


def stepdown_maxt(observed: np.ndarray, replicates: np.ndarray, se: np.ndarray, raw_p: np.ndarray, inflate: float = 1.0) -> np.ndarray:
    """Adjusted two-sided p-values for all pairs of K statistics.

    ``observed``: (K,) cell statistics; ``replicates``: (B, K) the same statistics on joint
    resamples; ``se``: (K, K) standard error of each pairwise difference (0: no evidence, p = 1);
    ``raw_p``: (K, K) each pair's own p-value, the floor.
    """
    k = observed.size
    i_idx, j_idx = np.triu_indices(k, 1)
    if i_idx.size == 0:
        return np.full((k, k), np.nan)
    scale = se[i_idx, j_idx]
    delta = observed[i_idx] - observed[j_idx]
    live = scale > 1e-15
    with np.errstate(divide="ignore", invalid="ignore"):
        t_obs = np.where(live, np.abs(delta) / np.where(live, scale, 1.0), 0.0)
        dev = (replicates[:, i_idx] - replicates[:, j_idx]) - delta
        t_star = np.where(live, np.abs(dev) * inflate / np.where(live, scale, 1.0), 0.0)
    t_star = np.nan_to_num(t_star, nan=0.0, posinf=np.inf)
    order = np.argsort(-t_obs, kind="stable")
    # M[:, k] = max over the hypotheses still in play at step k (those ranked k and below)
    running = np.maximum.accumulate(t_star[:, order[::-1]], axis=1)[:, ::-1]
    b = replicates.shape[0]
    q = (1 + np.sum(running >= t_obs[order][None, :] - 1e-12, axis=0)) / (b + 1)
    q = np.where(t_obs[order] > 0, q, 1.0)
    stepped = np.minimum(1.0, np.maximum.accumulate(q))
    adjusted = np.empty(i_idx.size)
    adjusted[order] = stepped
    adjusted = np.maximum(adjusted, raw_p[i_idx, j_idx])
    out = np.full((k, k), np.nan)
    out[i_idx, j_idx] = adjusted
    out[j_idx, i_idx] = adjusted
    return out


def best_set(observed: np.ndarray, p_adjusted: np.ndarray, higher_is_better: bool, alpha: float, resamples: int) -> BestSet:
    """Cells that no other cell beats with adjusted p < α: exactly those without a witness."""
    estimates = tuple(float(v) for v in observed)
    everyone = BestSet(estimates, higher_is_better, p_adjusted, frozenset(), alpha, resamples)
    members = frozenset(i for i in range(len(estimates)) if everyone.witness(i) is None)
    return BestSet(estimates, higher_is_better, p_adjusted, members, alpha, resamples)


def mean_replicates(sums: np.ndarray, sizes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, K) resampled cell means from cluster sums (C, K), cluster sizes (C,) and weights (B, C)."""
    return (weights @ sums) / (weights @ sizes)[:, None]


def null_se(sums: np.ndarray, total: float) -> np.ndarray:
    """(K, K) null standard error √(Σ_c (S_ci − S_cj)²)/N of every pairwise mean difference."""
    gram = sums.T @ sums
    diag = np.diag(gram)
    second = diag[:, None] + diag[None, :] - 2 * gram
    return np.sqrt(np.maximum(second, 0.0)) / total
