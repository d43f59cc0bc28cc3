"""Statistics with stated guarantees (docs/compare.md): intervals, paired differences, the
possibly-best set, verdicts, power and across-prompt intervals. Knows no harness type."""

from harness.stats.across_prompts import AcrossPrompts, across_prompts
from harness.stats.basics import DEFAULT_RESAMPLES, Interval, holm, kendall_tau, mcnemar, mean_interval, wilson
from harness.stats.best_set import BestSet, best_set
from harness.stats.difference import Difference, corpus_difference, difference
from harness.stats.paired import PairedResult, Pairing, compare_scores, pair
from harness.stats.power import Plan, plan_binary, plan_continuous
from harness.stats.verdicts import Verdict, pair_verdict

__all__ = [
    "AcrossPrompts", "BestSet", "DEFAULT_RESAMPLES", "Difference", "Interval", "PairedResult", "Pairing",
    "Plan", "Verdict", "across_prompts", "best_set", "compare_scores", "corpus_difference", "difference",
    "holm", "kendall_tau", "mcnemar", "mean_interval", "pair", "pair_verdict", "plan_binary",
    "plan_continuous", "wilson",
]
