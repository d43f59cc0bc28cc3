"""Statistics with stated guarantees (docs/compare.md): intervals, paired differences, the
possibly-best set, verdicts, power, across-prompt intervals, and anytime-valid confidence
sequences with racing of cells. Knows no harness type."""

# no name here equals a module of the package (``harness.stats.difference`` stays the module)
from harness.stats.across_prompts import AcrossPrompts
from harness.stats.basics import DEFAULT_RESAMPLES, Interval, holm, kendall_tau, mcnemar, mean_interval, wilson
from harness.stats.best_set import BestSet
from harness.stats.difference import Difference, corpus_difference
from harness.stats.paired import PairedResult, Pairing, compare_scores, pair
from harness.stats.power import Plan, plan_binary, plan_continuous
from harness.stats.racing import CellOutcome, PairBound, Race, RaceState, seeded_order
from harness.stats.sequential import ConfidenceSequence, confidence_sequence
from harness.stats.verdicts import Verdict, pair_verdict

__all__ = [
    "AcrossPrompts", "BestSet", "CellOutcome", "ConfidenceSequence", "DEFAULT_RESAMPLES", "Difference", "Interval",
    "PairBound", "PairedResult", "Pairing", "Plan", "Race", "RaceState", "Verdict", "compare_scores", "confidence_sequence", "corpus_difference",
    "holm", "kendall_tau", "mcnemar", "mean_interval", "pair", "pair_verdict", "plan_binary",
    "plan_continuous", "seeded_order", "wilson",
]
