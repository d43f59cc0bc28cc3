"""``evaluate:<path>``: a Hugging Face evaluate metric loaded from a local script, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.scoring import CorpusItem, Outcome, get_metric
from harness.tasks.task import Item

SCRIPT = '''
import datasets
import evaluate


class PrefixMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="share of predictions that start with their reference",
            citation="",
            inputs_description="predictions and references: strings",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        hits = [p.startswith(r) for p, r in zip(predictions, references)]
        return {"prefix_match": sum(hits) / len(hits), "wer": 1 - sum(hits) / len(hits)}
'''


@pytest.mark.slow  # importing evaluate/datasets takes ~15 s on this CPU
def test_local_evaluate_metric_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    script = tmp_path / "prefix_match.py"
    script.write_text(SCRIPT)
    metric = get_metric(f"evaluate:{script}")
    assert metric.higher_is_better and metric.aggregation == "corpus"
    items = [CorpusItem("Paris, France", ("Paris",)), CorpusItem("Lyon", ("Paris",)), CorpusItem("Paris", ("Paris",)), CorpusItem(None, ("x",))]
    assert metric.aggregate_corpus(items) == pytest.approx(0.5)
    outcome = Outcome(item=Item(id="a", row={}, input="", target=("Rome",)), text="Rome!", extracted="Rome!")
    assert metric.score(outcome) == 1.0
    wer = get_metric(f"evaluate:{script}#wer")  # an error-rate key is lower-is-better
    assert wer.higher_is_better is False and wer.aggregate_corpus(items) == pytest.approx(0.5)
    with pytest.raises(HarnessError, match="returned no key 'nope'"):
        get_metric(f"evaluate:{script}#nope").aggregate_corpus(items)


@pytest.mark.slow
def test_missing_local_metric_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="could not load evaluate metric"):
        get_metric(f"evaluate:{tmp_path}/no_such_metric_xyz")
