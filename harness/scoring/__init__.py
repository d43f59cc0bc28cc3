"""Scoring: extraction filters then per-item metrics (and corpus aggregations).

Importing this package registers every built-in metric: the per-item ones in ``metrics``,
and the library-backed ones (sacrebleu, rouge-score, SQuAD, scikit-learn, METEOR, ``maj@k`` /
``pass@k``, ``evaluate:<name>``) whose libraries are imported only when first used.
"""

from harness.scoring import (  # noqa: F401,E402  (registration)
    classification_metrics,
    evaluate_adapter,
    meteor,
    qa_metrics,
    sampling_metrics,
    text_metrics,
)
from harness.scoring.filters import FILTERS, Filter, apply_filters, build_filter
from harness.scoring.metrics import METRICS, CorpusItem, Metric, Outcome, get_metric, predicted_choice, register_metric, score_bounds

__all__ = [
    "FILTERS", "METRICS", "CorpusItem", "Filter", "Metric", "Outcome", "apply_filters", "build_filter", "get_metric",
    "predicted_choice", "register_metric", "score_bounds",
]
