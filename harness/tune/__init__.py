"""Fine-tuning on tasks rendered through a template, its card, and the training/evaluation overlap check."""

from harness.tune.card import CARD_JSON, TuneCard, load_card
from harness.tune.overlap import check_overlap, check_overlap_runs
from harness.tune.train import TuneConfig, tune

__all__ = [
    "CARD_JSON", "TuneCard", "TuneConfig", "check_overlap", "check_overlap_runs", "load_card", "tune",
]
