"""Contextual calibration: the arithmetic, content-free rendering, and a biased scorer recovered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.runner.calibration import (
    calibrate_run,
    calibrated_choice,
    calibration_summary,
    content_free_item,
    content_free_probs,
)
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tasks.task import Item

TEMPLATE = """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}Review: {{ s.review }}
Sentiment:{{ s.answer }}

{% endfor %}Review: {{ review }}
Sentiment:"""


class SentimentScorer(ScriptedBackend):
    """Scores by the last review's words; ``bias`` is added to ' positive' whatever the input.

    With bias 0 it predicts every item correctly; with a large bias it says 'positive' to
    everything (the majority-label / prompt bias that Zhao et al. measured).
    """

    bias = 0.0

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        review = prompt_text(request.context).rsplit("Review:", 1)[-1]
        signal = {" positive": float("good" in review), " negative": float("bad" in review)}[request.continuation]
        bias = self.bias if request.continuation == " positive" else 0.0
        return LoglikelihoodResult(logprob=-3.0 + signal + bias, is_greedy=False, n_tokens=1)


class BiasedScorer(SentimentScorer):
    bias = 2.0


def _task(root: Path) -> Path:
    folder = root / "senti"
    (folder / "prompts").mkdir(parents=True)
    spec = {"name": "senti", "type": "multiple_choice", "data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl"},
            "input": "{{ review }}", "choices": "{{ ['positive', 'negative'] }}", "target": "{{ label }}",
            "prompts": ["plain"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    for split, n in (("test", 20), ("fewshot", 10)):
        rows = [{"id": f"{split}{i}", "review": f"a {'good' if i % 2 == 0 else 'bad'} film number {i}", "label": i % 2} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "prompts" / "plain.jinja").write_text(TEMPLATE)
    return folder


def test_arithmetic_divides_out_the_content_free_distribution() -> None:
    p_cf = content_free_probs([[np.log(0.8), np.log(0.2)], [np.log(0.6), np.log(0.4)]])
    assert np.allclose(p_cf, [0.7, 0.3])
    assert calibrated_choice([np.log(0.6), np.log(0.4)], p_cf) == 1  # 0.6/0.7 < 0.4/0.3
    assert calibrated_choice([np.log(0.9), np.log(0.1)], p_cf) == 0
    assert calibrated_choice([np.log(0.6), np.log(0.4)], np.array([0.5, 0.5])) == 0  # uniform p_cf: unchanged


def test_content_free_item_replaces_only_the_input_fields() -> None:
    item = Item(id="x", row={"review": "great plot", "title": "Film", "tags": ["a"], "label": 0}, input="great plot",
                target=0, choices=("positive", "negative"))
    neutral = content_free_item(item, "N/A", "{{ review }}")
    assert neutral.input == "N/A" and neutral.row == {"review": "N/A", "title": "Film", "tags": ["a"], "label": 0}
    assert neutral.choices == item.choices and neutral.target == 0 and neutral.id == "x"


@pytest.mark.parametrize("shots,selector", [(0, "first_k"), (4, "random")])
def test_calibration_recovers_the_unbiased_predictions(tmp_path: Path, shots: int, selector: str) -> None:
    folder = _task(tmp_path)
    predictions = {}
    for name, backend_cls in (("unbiased", SentimentScorer), ("biased", BiasedScorer)):
        store = Store(tmp_path / f"{name}.db")
        spec = ExperimentSpec.model_validate({"tasks": [str(folder)], "shots": [shots], "selectors": [selector], "models": [f"scripted:{name}"]})
        backend = backend_cls(ModelSpec(backend="scripted", model=name))
        summary = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend})
        seen_before = len(backend.requests_seen)
        assert calibrate_run(store, summary.run_id, backends={spec.models[0].label: backend}) == 20
        content_free_contexts = {prompt_text(r.context) for r in backend.requests_seen[seen_before:]}  # type: ignore[attr-defined]
        sent = backend.requests_seen[seen_before:]
        assert len(sent) == len({(prompt_text(r.context), r.continuation) for r in sent})  # type: ignore[attr-defined]
        # zero-shot: the 3 content-free prompts x 2 choices are the same for every item (sent once)
        assert len(sent) == 6 if shots == 0 else 6 < len(sent) <= 20 * 3 * 2
        assert any(c.endswith("Review: N/A\nSentiment:") for c in content_free_contexts)
        if shots:  # the content-free prompts carry the item's own stored demonstrations
            item_row = store.items([summary.run_id])[0]
            demos = item_row.prompt.rsplit("Review:", 1)[0]
            assert demos.count("Sentiment:") == shots and demos + "Review: [MASK]\nSentiment:" in content_free_contexts
        predictions[name] = {r.item_id: (r.predicted, r.calibrated, r.target) for r in store.calibration(summary.run_id)}
        (cell,) = calibration_summary(store, summary.run_id)
        predictions[name + "_summary"] = cell
        # a second pass is answered by the response cache: the backend sees nothing new
        before = len(backend.requests_seen)
        calibrate_run(store, summary.run_id, backends={spec.models[0].label: backend})
        assert len(backend.requests_seen) == before
        store.close()
    unbiased, biased = predictions["unbiased"], predictions["biased"]
    assert all(pred == target for pred, _, target in unbiased.values())  # the unbiased scorer is right
    assert {pred for pred, _, _ in biased.values()} == {0}  # the bias makes it say 'positive' to all
    assert {k: cal for k, (_, cal, _) in biased.items()} == {k: pred for k, (pred, _, _) in unbiased.items()}
    cell = predictions["biased_summary"]
    assert cell.acc.mean == 0.5 and cell.acc_calibrated.mean == 1.0 and cell.p_value < 0.01
    assert cell.p_cf_mean[0] > 0.8  # the estimated bias towards 'positive'


def test_cli_calibrate_json_and_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import cli

    folder = _task(tmp_path)
    db = tmp_path / "c.db"
    assert cli("run", "--task", folder, "--shots", "2", "--selector", "random", "--model", "scripted:m", "--db", db, "--quiet") == 0
    capsys.readouterr()
    assert cli("calibrate", "--db", db, "--json", "--content-free", "N/A") == 0
    out = json.loads(capsys.readouterr().out)
    (cell,) = out["cells"]
    assert out["items"] == 20 and cell["n"] == 20 and 0 <= cell["acc_calibrated"] <= 1 and len(cell["p_cf_mean"]) == 2
    assert cli("calibrate", "nosuchrun", "--db", db) == 2
    assert "no run matching" in capsys.readouterr().err


def test_calibrate_writes_acc_calibrated_item_scores_that_compare_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.analysis.compare import compare_runs
    from harness.core.errors import HarnessError
    from harness.runner.rescore import rescore_run
    from tests.helpers import cli

    folder = _task(tmp_path)
    db = tmp_path / "c.db"
    store = Store(db)
    spec = ExperimentSpec.model_validate({"tasks": [str(folder)], "shots": [0], "models": ["scripted:biased"]})
    backend = BiasedScorer(ModelSpec(backend="scripted", model="biased"))
    run_id = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend}).run_id
    with pytest.raises(HarnessError, match="harness calibrate"):  # nothing calibrated yet: an error, not a row of zeros
        compare_runs(store, [run_id], "acc_calibrated")
    for _ in range(2):  # idempotent: a second pass gives the same scores
        calibrate_run(store, run_id, backends={spec.models[0].label: backend})
        scores = [r.scores for r in store.items([run_id])]
        assert all(s["acc_calibrated"] == 1.0 for s in scores) and sum(s["acc"] for s in scores) == 10
    (ranking,) = compare_runs(store, [run_id], "acc_calibrated").rankings
    assert ranking.metric == "acc_calibrated" and ranking.cells[0].summary.interval.mean == 1.0 and ranking.cells[0].summary.n == 20
    from harness.store.export import export_run

    mirrored = [json.loads(line) for line in (export_run(store, run_id) / "items.jsonl").read_text().splitlines()]
    assert all(row["scores"]["acc_calibrated"] == 1.0 for row in mirrored)
    # rescore keeps the calibrated score (it cannot be recomputed from one response) and refuses to add it
    rescore_run(store, run_id)
    assert all(r.scores["acc_calibrated"] == 1.0 for r in store.items([run_id]))
    with pytest.raises(HarnessError, match="harness calibrate"):
        rescore_run(store, run_id, ["acc_calibrated"])
    store.close()
    capsys.readouterr()
    assert cli("compare", "--db", db, "--metric", "acc_calibrated", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["metric"] == "acc_calibrated" and row["mean"] == 1.0


def test_acc_calibrated_cannot_be_a_task_metric(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError
    from harness.scoring.checks import check_task
    from harness.tasks.task import load_task

    folder = _task(tmp_path)
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    (folder / "task.yaml").write_text(yaml.safe_dump({**spec, "metrics": ["acc", "acc_calibrated"]}))
    with pytest.raises(HarnessError, match="harness calibrate"):
        check_task(load_task(folder))


@pytest.mark.slow
def test_real_model_run_calibrate_compare_end_to_end(db_path: Path, shared_data: Path, embedded_model: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Embedded Gemma 3 270M on 4 SST-2 items, 2 shots: run -> calibrate -> acc_calibrated -> compare and sensitivity."""
    from tests.helpers import cli

    common = ["--db", db_path, "--data-dir", shared_data]
    assert cli("run", "--task", "sst2", "--prompt", "lm_eval", "--shots", "2", "--selector", "random", "--limit", "4",
               "--model", "--quiet", "--json", *common) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert cli("calibrate", run_id, "--content-free", "N/A", "--json", "--db", db_path) == 0
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert cell["n"] == 4 and abs(sum(cell["p_cf_mean"]) - 1) < 1e-9 and 0 < cell["p_cf_mean"][0] < 1
    store = Store(db_path)
    scores = [r.scores for r in store.items([run_id])]
    store.close()
    assert len(scores) == 4 and all(s["acc_calibrated"] in (0.0, 1.0) for s in scores)
    assert sum(s["acc_calibrated"] for s in scores) / 4 == cell["acc_calibrated"]
    assert cli("compare", run_id, "--metric", "acc_calibrated", "--json", "--db", db_path) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["metric"] == "acc_calibrated" and row["n"] == 4 and row["mean"] == cell["acc_calibrated"]
    assert cli("sensitivity", run_id, "--json", "--db", db_path) == 0
    (calibration,) = json.loads(capsys.readouterr().out)["slices"]
    assert calibration["factor"] == "calibration" and [lv["level"] for lv in calibration["levels"]] == ["uncalibrated", "calibrated"]
    assert [lv["mean"] for lv in calibration["levels"]] == [cell["acc"], cell["acc_calibrated"]]


# -- unscorable items (NaN log-probabilities) and content-free rendering of read fields only --------------------
class NaNForItemZero(BiasedScorer):
    """The biased scorer, but the reply for test item 0 (target 0, 'positive') could not be scored: NaN."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        if prompt_text(request.context).rsplit("Review:", 1)[-1].startswith(" a good film number 0\n"):
            return LoglikelihoodResult(logprob=float("nan"), is_greedy=False, n_tokens=1)
        return super().score(request)


class NaNForContentFree(BiasedScorer):
    """The biased scorer, but every content-free prompt (or only those of ``failing``) gets NaN."""

    failing: tuple[str, ...] = ("N/A", "", "[MASK]")

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        last = prompt_text(request.context).rsplit("Review:", 1)[-1]
        if last.rstrip("\n").removesuffix("Sentiment:").rstrip("\n").strip() in self.failing and "film" not in last:
            return LoglikelihoodResult(logprob=float("nan"), is_greedy=False, n_tokens=1)
        return super().score(request)


class NaNForMask(NaNForContentFree):
    failing = ("[MASK]",)


def _calibrated(tmp_path: Path, backend_cls: type[ScriptedBackend], shots: int = 0) -> tuple[Store, str]:
    folder = _task(tmp_path)
    store = Store(tmp_path / "nan.db")
    spec = ExperimentSpec.model_validate({"tasks": [str(folder)], "shots": [shots], "selectors": ["random"], "models": ["scripted:nan"]})
    backend = backend_cls(ModelSpec(backend="scripted", model="nan"))
    run_id = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend}).run_id
    assert calibrate_run(store, run_id, backends={spec.models[0].label: backend}) == 20
    return store, run_id


@pytest.mark.parametrize("shots", [0, 2])
def test_an_item_with_nan_logprobs_is_unscorable_not_choice_zero(tmp_path: Path, shots: int) -> None:
    store, run_id = _calibrated(tmp_path, NaNForItemZero, shots)
    (row,) = [r for r in store.calibration(run_id) if r.item_id == "test0"]
    assert row.target == 0 and row.calibrated == -1 and row.predicted == -1  # NO_CHOICE, not choice 0
    scores = {r.item_id: r.scores for r in store.items([run_id])}
    assert scores["test0"]["acc_calibrated"] == 0.0 and scores["test0"]["acc"] == 0.0
    assert all(s["acc_calibrated"] == 1.0 for item, s in scores.items() if item != "test0")  # the rest is calibrated as before
    (cell,) = calibration_summary(store, run_id)
    assert cell.n == 20 and cell.unscorable == 1 and cell.content_free_dropped == 0
    assert cell.acc_calibrated.mean == 19 / 20 and cell.acc.mean == 9 / 20
    assert cell.to_json()["unscorable"] == 1 and np.isfinite(cell.p_cf_mean).all()
    store.close()


def test_items_whose_content_free_scores_are_all_nan_are_unscorable(tmp_path: Path) -> None:
    store, run_id = _calibrated(tmp_path, NaNForContentFree)
    rows = store.calibration(run_id)
    assert all(r.calibrated == -1 for r in rows) and {r.predicted for r in rows} == {0}  # plain prediction unaffected
    scores = [r.scores for r in store.items([run_id])]
    assert all(s["acc_calibrated"] == 0.0 for s in scores)  # today: every target-0 item counted correct
    (cell,) = calibration_summary(store, run_id)
    assert cell.unscorable == 20 and cell.acc_calibrated.mean == 0.0 and cell.acc.mean == 0.5 and cell.p_cf_mean == ()
    assert json.loads(json.dumps(cell.to_json(), allow_nan=False))["unscorable"] == 20  # valid JSON, no NaN
    store.close()


def test_a_nan_content_free_input_is_dropped_for_that_item_and_counted(tmp_path: Path) -> None:
    store, run_id = _calibrated(tmp_path, NaNForMask, shots=2)
    scores = [r.scores for r in store.items([run_id])]
    assert all(s["acc_calibrated"] == 1.0 for s in scores)  # 'N/A' and '' still estimate the bias
    (cell,) = calibration_summary(store, run_id)
    assert cell.unscorable == 0 and cell.content_free_dropped == 20 and cell.p_cf_mean[0] > 0.8
    store.close()


def test_cli_calibrate_shows_unscorable_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import cli

    store, run_id = _calibrated(tmp_path, NaNForItemZero)  # the CLI pass below is answered from the response cache
    store.close()
    capsys.readouterr()
    assert cli("calibrate", run_id, "--db", tmp_path / "nan.db", "--json") == 0
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert cell["unscorable"] == 1 and cell["content_free_dropped"] == 0 and cell["n"] == 20 and cell["acc_calibrated"] == 0.95
    assert cli("calibrate", run_id, "--db", tmp_path / "nan.db") == 0
    out = capsys.readouterr().out
    assert "unscorable" in out and "1 of 20 items unscorable" in " ".join(out.split())


def test_content_free_item_replaces_only_fields_the_input_expression_reads() -> None:
    # 'about' occurs in the input but the input expression does not read 'topic': it must stay
    item = Item(id="x", row={"question": "What about X?", "topic": "about", "label": 0}, input="What about X?",
                target=0, choices=("a", "b"))
    neutral = content_free_item(item, "N/A", "{{ question }}")
    assert neutral.row == {"question": "N/A", "topic": "about", "label": 0} and neutral.input == "N/A"
    # several fields, bare expression syntax, globals and filters are not fields
    item = Item(id="y", row={"Title": "Wall St", "Description": "Stocks rise", "about": "Wall St"}, input="Wall St. Stocks rise",
                target=0, choices=("a", "b"))
    neutral = content_free_item(item, "N/A", "Title ~ '. ' ~ Description | trim")
    assert neutral.row == {"Title": "N/A", "Description": "N/A", "about": "Wall St"}
    # a dotted access into a structure replaces that string only (ARC: question.stem; the choices stay)
    q = {"stem": "Which is a gas?", "choices": [{"text": "air", "label": "A"}, {"text": "rock", "label": "B"}]}
    item = Item(id="z", row={"question": q, "answerKey": "A"}, input=q["stem"], target=0, choices=("air", "rock"))
    neutral = content_free_item(item, "N/A", "{{ question.stem }}")
    assert neutral.row["question"] == {"stem": "N/A", "choices": q["choices"]} and q["stem"] == "Which is a gas?"  # no mutation
    assert content_free_item(item, "N/A", "{{ question['stem'] }}").row["question"]["stem"] == "N/A"
    # a structure read whole (not a string at a constant path) is left as it is
    item = Item(id="w", row={"parts": ["a", "b"], "x": 1}, input="a b", target=0, choices=("a", "b"))
    assert content_free_item(item, "N/A", "{{ parts | join(' ') }}").row == {"parts": ["a", "b"], "x": 1}


def test_calibration_prompt_keeps_fields_the_input_does_not_read(tmp_path: Path) -> None:
    """End to end: a template that shows a 'topic' field whose value is a substring of the input."""
    folder = _task(tmp_path)
    rows = [{"id": f"test{i}", "review": f"a {'good' if i % 2 == 0 else 'bad'} film", "topic": "film", "label": i % 2} for i in range(4)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "prompts" / "plain.jinja").write_text(TEMPLATE.replace("Review: {{ review }}", "Topic: {{ topic }}\nReview: {{ review }}"))
    store = Store(tmp_path / "t.db")
    spec = ExperimentSpec.model_validate({"tasks": [str(folder)], "shots": [0], "models": ["scripted:t"]})
    backend = SentimentScorer(ModelSpec(backend="scripted", model="t"))
    run_id = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: backend}).run_id
    seen = len(backend.requests_seen)
    calibrate_run(store, run_id, backends={spec.models[0].label: backend}, content_free=["N/A"])
    contexts = {prompt_text(r.context) for r in backend.requests_seen[seen:]}  # type: ignore[attr-defined]
    assert contexts == {"Topic: film\nReview: N/A\nSentiment:"}
    store.close()
