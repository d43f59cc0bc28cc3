"""Scoring: extraction filters then per-item metrics."""

from harness.scoring.filters import FILTERS, Filter, apply_filters, build_filter
from harness.scoring.metrics import METRICS, Metric, Outcome, predicted_choice, register_metric

__all__ = ["FILTERS", "METRICS", "Filter", "Metric", "Outcome", "apply_filters", "build_filter", "predicted_choice", "register_metric"]
