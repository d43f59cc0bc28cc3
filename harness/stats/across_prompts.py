"""A model-vs-model verdict over prompt variants, not one prompt (Mizrahi et al. 2024,
"State of What Art? A Call for Multi-Prompt LLM Evaluation", TACL).

A "better model" on one template may be a better fit to that template. Here every prompt
variant v and item i gives a paired difference Δ_iv (tuned − base), and the question is the
mean difference over the population of prompt variants *and* items:

    Δ_iv = μ + a_v + b_i + e_iv        (crossed random effects: variant, item, residual)

The grand mean's variance is σ_a²/V + σ_b²/I + σ_e²/(VI). Harness estimates it by
(MS_V + MS_I)/(VI) from the two-way ANOVA mean squares, which overstates it by σ_e²/(VI) (the
same overstatement as Owen's 2007 pigeonhole bootstrap for crossed designs) and so errs on the
safe side, with Satterthwaite's degrees of freedom: with 3 variants the interval is honestly
wide, because 3 prompts say little about prompts in general. The interval and the t test come
from the same statistic. Also reported: the worst and best variant, and Kendall τ between the
variants' order under the two models with a bootstrap CI over items (variants held fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.core.deps import LazyModule
from harness.stats.basics import kendall_tau_rows
from harness.stats.difference import cluster_codes, resample_weights

scipy_stats = LazyModule("scipy.stats")

TAU_RESAMPLES = 1000


@dataclass(frozen=True)
class Variant:
    name: str
    diff: float  # tuned − base on this variant, over the common items


@dataclass(frozen=True)
class AcrossPrompts:
    """Tuned − base averaged over prompt variants, with prompt and item variance both counted."""

    variants: tuple[Variant, ...]
    items: int
    mean: float
    low: float
    high: float
    p_value: float
    df: float
    confidence: float
    tau: float  # Kendall τ of the variants' scores under base vs tuned
    tau_low: float
    tau_high: float
    prompt_sd: float  # sd of the per-variant differences
    method: str = "two-way random effects (variants x items), conservative ANOVA variance, Satterthwaite df"

    @property
    def worst(self) -> Variant:
        return min(self.variants, key=lambda v: v.diff)

    @property
    def best(self) -> Variant:
        return max(self.variants, key=lambda v: v.diff)


def crossed_mean_interval(diffs: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float, float]:
    """(mean, low, high, p, df) of the grand mean of an items x variants table of differences."""
    items, variants = diffs.shape
    grand = float(diffs.mean())
    item_means, variant_means = diffs.mean(axis=1), diffs.mean(axis=0)
    ms_v = items * float(np.sum((variant_means - grand) ** 2)) / max(variants - 1, 1)
    ms_i = variants * float(np.sum((item_means - grand) ** 2)) / max(items - 1, 1)
    var = (ms_v + ms_i) / (items * variants)
    if var <= 0:
        return grand, grand, grand, (1.0 if grand == 0 else 0.0), float("inf")
    denom = (ms_v**2 / max(variants - 1, 1)) + (ms_i**2 / max(items - 1, 1))
    df = (ms_v + ms_i) ** 2 / denom if denom > 0 else float(variants - 1)
    se = var**0.5
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, df))
    p = float(2 * scipy_stats.t.sf(abs(grand) / se, df))
    return grand, grand - t * se, grand + t * se, min(1.0, p), float(df)


def across_prompts(
    names: Sequence[str], base: np.ndarray, tuned: np.ndarray, clusters: np.ndarray | None = None,
    confidence: float = 0.95, seed: int = 0,
) -> AcrossPrompts:
    """``base`` and ``tuned``: items x variants score tables on the same items (rows) and variants."""
    diffs = tuned - base
    mean, low, high, p, df = crossed_mean_interval(diffs, confidence)
    per_variant = diffs.mean(axis=0)
    variants = tuple(Variant(n, float(v)) for n, v in zip(names, per_variant))
    tau, tau_low, tau_high = _tau(base, tuned, clusters, confidence, seed)
    sd = float(np.std(per_variant, ddof=1)) if len(names) > 1 else float("nan")
    return AcrossPrompts(variants, int(diffs.shape[0]), mean, low, high, p, df, confidence, tau, tau_low, tau_high, sd)


def _tau(base: np.ndarray, tuned: np.ndarray, clusters: np.ndarray | None, confidence: float, seed: int) -> tuple[float, float, float]:
    if base.shape[1] < 3:
        return float("nan"), float("nan"), float("nan")
    point = float(kendall_tau_rows(base.mean(axis=0)[None, :], tuned.mean(axis=0)[None, :])[0])
    labels = clusters if clusters is not None else np.arange(base.shape[0]).astype(str)
    low, high = tau_interval(base, tuned, labels, confidence, seed)
    return point, low, high


def tau_interval(a: np.ndarray, b: np.ndarray, labels: np.ndarray, confidence: float = 0.95, seed: int = 0,
                 resamples: int = TAU_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap CI of Kendall τ between the column means of two items x variants tables,
    resampling items (rows) by ``labels`` (their clusters) jointly for both; the variants are fixed."""
    codes, units = cluster_codes(np.asarray(labels))
    weights = resample_weights(units, resamples, seed)
    sizes = np.bincount(codes, minlength=units).astype(np.float64)

    def resampled(table: np.ndarray) -> np.ndarray:
        sums = np.zeros((units, table.shape[1]))
        np.add.at(sums, codes, table)
        return (weights @ sums) / (weights @ sizes)[:, None]

    taus = kendall_tau_rows(resampled(a), resampled(b))
    taus = taus[np.isfinite(taus)]
    if taus.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(taus, [tail, 1 - tail])
    return float(low), float(high)
