"""Classification metrics via scikit-learn: macro precision / recall / F1 and Matthews
correlation over the whole cell (corpus aggregation), plus a per-class report.

Each item's own score for these metrics is its correctness (0/1), so items stay paired
across cells; the cell score is sklearn's value over all (prediction, gold) pairs. An item
whose prediction is missing counts as the label ``"<none>"`` (always wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.scoring.metrics import LABEL_KINDS, CorpusItem, Metric, Outcome, is_correct, predicted_choice, register_metric

_TYPES = LABEL_KINDS
MISSING = "<none>"


def _sklearn() -> None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise HarnessError("classification corpus metrics need scikit-learn: pip install 'harness[metrics]'")


def _pairs(items: Sequence[CorpusItem]) -> tuple[list[str], list[str]]:
    _sklearn()
    golds = [item.references[0] if item.references else MISSING for item in items]
    preds = [item.prediction if item.prediction is not None else MISSING for item in items]
    return preds, golds


def _correct(outcome: Outcome) -> float:
    return float(is_correct(outcome, predicted_choice(outcome)))


def _macro(kind: str) -> Any:
    def compute(items: Sequence[CorpusItem]) -> float:
        from sklearn import metrics

        preds, golds = _pairs(items)
        labels = sorted(set(golds))  # macro over the gold classes, as GLUE/SuperGLUE report it
        fn = {"precision": metrics.precision_score, "recall": metrics.recall_score, "f1": metrics.f1_score}[kind]
        return float(fn(golds, preds, labels=labels, average="macro", zero_division=0))

    return compute


def _mcc(items: Sequence[CorpusItem]) -> float:
    from sklearn.metrics import matthews_corrcoef

    preds, golds = _pairs(items)
    return float(matthews_corrcoef(golds, preds))


def confusion_stats(items: Sequence[CorpusItem]) -> np.ndarray:
    """Per item, a one-hot cell of the L x L confusion matrix (gold row, predicted column),
    flattened: their column sums are the confusion matrix, from which every metric above is
    computed. The bootstrap sums these instead of calling sklearn once per resample."""
    preds, golds = _pairs(items)
    labels = sorted(set(golds) | set(preds))
    index = {label: i for i, label in enumerate(labels)}
    size = len(labels)
    out = np.zeros((len(items), size * size))
    out[np.arange(len(items)), [index[g] * size + index[p] for g, p in zip(golds, preds)]] = 1.0
    return out


def _from_confusion(name: str) -> Any:
    """The metric from a summed confusion matrix, exactly as sklearn computes it (zero_division=0)."""

    def compute(summed: np.ndarray) -> float:
        size = int(round(math.sqrt(summed.size)))
        matrix = summed.reshape(size, size)
        true, pred, hit = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
        if name == "mcc":
            total, correct = matrix.sum(), hit.sum()
            cov_yy, cov_pp = total * total - float(true @ true), total * total - float(pred @ pred)
            denominator = math.sqrt(cov_yy * cov_pp)
            return float((correct * total - float(true @ pred)) / denominator) if denominator > 0 else 0.0
        gold = true > 0  # macro over the gold classes present, as the corpus function does
        if not gold.any():
            return 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pred > 0, hit / np.where(pred > 0, pred, 1), 0.0)
            recall = np.where(true > 0, hit / np.where(true > 0, true, 1), 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0, precision + recall, 1), 0.0)
        chosen = {"f1_macro": f1, "precision_macro": precision, "recall_macro": recall}[name]
        return float(chosen[gold].mean())

    return compute


def per_class_report(items: Sequence[CorpusItem]) -> dict[str, dict[str, float]]:
    """Label -> precision, recall, f1, support (sklearn ``precision_recall_fscore_support``)."""
    from sklearn.metrics import precision_recall_fscore_support

    preds, golds = _pairs(items)
    labels = sorted(set(golds) | (set(preds) - {MISSING}))
    precision, recall, f1, support = precision_recall_fscore_support(golds, preds, labels=labels, zero_division=0)
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }


for _name, _fn, _text in (
    ("f1_macro", _macro("f1"), "macro-averaged F1 over the gold classes (sklearn)"),
    ("precision_macro", _macro("precision"), "macro-averaged precision (sklearn)"),
    ("recall_macro", _macro("recall"), "macro-averaged recall (sklearn)"),
    ("mcc", _mcc, "Matthews correlation coefficient (sklearn), in [-1, 1]"),
):
    register_metric(Metric(_name, _text, True, "continuous", _TYPES, _correct, aggregation="corpus", corpus=_fn,
                           corpus_stats=confusion_stats, corpus_from_stats=_from_confusion(_name), worst=0.0))
