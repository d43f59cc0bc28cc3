"""Items with several correct choices: the task YAML (``target_format: labels`` or a list ``target:``), its
validation errors, and every place that reads a multiple-choice target (runner, store, rescore, compare,
calibrate, tune, demonstrations), end to end on the scripted backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.analysis.compare import target_text as shown_target
from harness.core.errors import HarnessError
from harness.prompts.template import load_prompt
from harness.runner.calibration import calibrate_run
from harness.runner.execute import run_experiment
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec
from harness.scoring.checks import check_task
from harness.store.store import Store
from harness.tasks.task import load_task
from harness.tune.train import target_text

TEMPLATE = """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}{% for s in shots %}Q: {{ s.input }}
A:{{ s.answer }}

{% endfor %}Q: {{ input }}
A:"""


def rows(n: int) -> list[dict[str, Any]]:
    """TruthfulQA-shaped rows: mc1_targets has one correct choice (the first), mc2_targets several (first)."""
    out = []
    for i in range(n):
        trues = [f"true {i}.{k}" for k in range(1 + i % 3)]
        falses = [f"false {i}.{k}" for k in range(2 + i % 2)]
        out.append({"id": f"q{i}", "question": f"question {i}?",
                    "mc1_targets": {"choices": [trues[0], *falses], "labels": [1] + [0] * len(falses)},
                    "mc2_targets": {"choices": [*trues, *falses], "labels": [1] * len(trues) + [0] * len(falses)}})
    return out


def write(root: Path, spec: dict[str, Any] | None = None, data: list[dict[str, Any]] | None = None, name: str = "multi") -> Path:
    folder = root / name
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "name": name, "type": "multiple_choice", "data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl"},
        "input": "{{ question }}", "choices": "{{ mc2_targets.choices }}", "target": "{{ mc2_targets.labels }}",
        "target_format": "labels", "prompts": ["plain"], "metrics": ["mc2", "mc1", "acc"],
    }
    base.update(spec or {})
    (folder / "task.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    for split, these in (("test", data if data is not None else rows(12)), ("fewshot", rows(4))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in these))
    (folder / "prompts" / "plain.jinja").write_text(TEMPLATE)
    return folder


# -- the YAML ----------------------------------------------------------------------------
def test_labels_give_every_correct_choice_and_the_first_is_the_target(tmp_path: Path) -> None:
    items = load_task(write(tmp_path)).items()
    assert [(i.target, i.correct) for i in items[:3]] == [(0, None), (0, (0, 1)), (0, (0, 1, 2))]
    assert [i.correct_choices for i in items[:3]] == [(0,), (0, 1), (0, 1, 2)]
    assert items[2].stored_target() == [0, 1, 2] and items[0].stored_target() == 0


def test_a_list_target_names_the_correct_choices_by_index_or_text(tmp_path: Path) -> None:
    data = [{"id": "a", "question": "q?", "options": ["w", "x", "y", "z"], "answer": [2, 0]},
            {"id": "b", "question": "q?", "options": ["w", "x", "y", "z"], "answer": ["z", "x"]},
            {"id": "c", "question": "q?", "options": ["w", "x", "y", "z"], "answer": 3}]
    spec = {"choices": "{{ options }}", "target": "{{ answer }}", "target_format": "choice"}
    items = load_task(write(tmp_path, spec, data)).items()
    # the task's order is kept: the first listed is the one demonstrations show and tune trains on
    assert [(i.target, i.correct) for i in items] == [(2, (2, 0)), (3, (3, 1)), (3, None)]


@pytest.mark.parametrize("answer,expected", [
    ([1, 0, 0], "looks like one 0/1 label per choice.*target_format: labels"),
    ([True, False, True], "looks like one 0/1 label per choice"),
    ([0, 7], "target index 7 is out of range for 3 choices"),
    ([1, "y", 1], "listed twice"),
    ([], "empty list"),
])
def test_list_target_errors_name_file_field_and_line(tmp_path: Path, answer: Any, expected: str) -> None:
    data = [{"id": "a", "question": "q?", "options": ["x", "y", "z"], "answer": 0},
            {"id": "b", "question": "q?", "options": ["x", "y", "z"], "answer": answer}]
    folder = write(tmp_path, {"choices": "{{ options }}", "target": "{{ answer }}", "target_format": "choice"}, data)
    with pytest.raises(HarnessError, match=expected) as info:
        load_task(folder).items()
    assert "task.yaml: field 'target'" in str(info.value) and "test.jsonl line 2" in str(info.value)


@pytest.mark.parametrize("labels,expected", [
    ([1, 0], "2 labels for 3 choices"),
    ([1, 0, 2], "label 2 is not 0/1"),
    ([0, 0, 0], "no choice is labelled 1"),
    ("1,0,0", "needs one 0/1 flag per choice"),
])
def test_labels_errors_name_file_field_and_line(tmp_path: Path, labels: Any, expected: str) -> None:
    data = [{"id": "a", "question": "q?", "options": ["x", "y", "z"], "flags": [0, 1, 0]},
            {"id": "b", "question": "q?", "options": ["x", "y", "z"], "flags": labels}]
    folder = write(tmp_path, {"choices": "{{ options }}", "target": "{{ flags }}"}, data)
    with pytest.raises(HarnessError, match=expected) as info:
        load_task(folder).items()
    assert "task.yaml: field 'target' ('{{ flags }}')" in str(info.value) and "test.jsonl line 2" in str(info.value)


def test_labels_accept_booleans_and_digit_strings(tmp_path: Path) -> None:
    data = [{"id": "a", "question": "q?", "options": ["x", "y", "z"], "flags": [False, True, True]},
            {"id": "b", "question": "q?", "options": ["x", "y", "z"], "flags": ["0", "0", "1"]}]
    items = load_task(write(tmp_path, {"choices": "{{ options }}", "target": "{{ flags }}"}, data)).items()
    assert [i.correct_choices for i in items] == [(1, 2), (2,)]


def test_target_format_is_for_multiple_choice_and_classification_takes_one_label(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="'target_format: labels' is for multiple_choice"):
        load_task(write(tmp_path, {"type": "generate", "choices": None, "metrics": ["exact_match"]}))
    folder = write(tmp_path, {"type": "classification", "choices": None, "target_format": "choice", "target": "{{ [0, 1] }}",
                              "verbalizers": {"a": "a", "b": "b"}, "metrics": ["acc"]}, name="cls")
    with pytest.raises(HarnessError, match="one gold label"):
        load_task(folder).items()
    with pytest.raises(HarnessError, match="does not apply to a classification task"):
        check_task(load_task(write(tmp_path, {"type": "classification", "choices": None, "target_format": "choice", "target": "0",
                                              "verbalizers": {"a": "a", "b": "b"}, "metrics": ["mc2"]}, name="cls2")))


# -- end to end --------------------------------------------------------------------------
def _run(tmp_path: Path, folder: Path, shots: int = 0) -> tuple[Store, str]:
    store = Store(tmp_path / "results" / "h.db")
    spec = ExperimentSpec(tasks=[str(folder)], models=["scripted:m"], shots=[shots])
    return store, run_experiment(spec, store, show_progress=False).run_id


def test_run_stores_every_correct_choice_and_scores_mc1_mc2(tmp_path: Path) -> None:
    folder = write(tmp_path)
    store, run = _run(tmp_path, folder)
    items = {i.id: i for i in load_task(folder).items()}
    seen_multi = 0
    for row in store.items([run]):
        item = items[row.item_id]
        target = row.target
        assert target == (list(item.correct) if item.correct else 0)
        seen_multi += isinstance(target, list)
        logprobs = np.array([r["logprob"] for r in row.response])
        p = np.exp(logprobs) / np.exp(logprobs).sum()  # lm-eval's process_results_mc2, written out
        scores = row.scores
        assert scores["mc2"] == pytest.approx(float(p[list(item.correct_choices)].sum()), abs=1e-12)
        assert scores["mc1"] == scores["acc"] == float(int(np.argmax(logprobs)) in item.correct_choices)
    assert seen_multi == 8  # 8 of the 12 rows have 2 or 3 true answers
    items_jsonl = [json.loads(line) for line in (store.path.parent / run / "items.jsonl").read_text().splitlines()]
    assert any(isinstance(r["target"], list) and len(r["target"]) == 3 for r in items_jsonl)


def test_rescore_reproduces_mc2_with_and_without_the_task(tmp_path: Path) -> None:
    folder = write(tmp_path)
    store, run = _run(tmp_path, folder)
    summary = rescore_run(store, run, ["acc_norm"], write=False)
    assert summary.reproduced and {c.metric for c in summary.checks} == {"mc1", "mc2", "acc"}
    shutil.rmtree(folder)  # the task is gone: the stored target list (and continuations) are all there is
    summary = rescore_run(store, run, ["acc_norm_bytes"], write=False)
    assert summary.reproduced and "stored responses only" in next(iter(summary.task_sources.values()))


def test_demonstrations_and_tune_use_the_first_correct_choice(tmp_path: Path) -> None:
    folder = write(tmp_path)
    store, run = _run(tmp_path, folder, shots=3)
    prompt = store.items([run])[0].prompt
    # fewshot rows 1 and 2 have 2 and 3 true answers: a demonstration shows the first
    assert "Q: question 1?\nA: true 1.0\n" in prompt and "Q: question 2?\nA: true 2.0\n" in prompt
    task = load_task(folder)
    example = target_text(task, load_prompt(task, "plain"), task.items()[2])
    assert example.target == " true 2.0"


def test_compare_shows_every_correct_choice(tmp_path: Path) -> None:
    store, run = _run(tmp_path, write(tmp_path))
    row = next(r for r in store.items([run]) if r.item_id == "q2")
    assert shown_target(row) == "true 2.0 | true 2.1 | true 2.2 (choices 0, 1, 2)"
    single = next(r for r in store.items([run]) if r.item_id == "q0")
    assert shown_target(single) == "true 0.0 (choice 0)"


def test_calibrate_refuses_items_with_several_correct_choices(tmp_path: Path) -> None:
    store, run = _run(tmp_path, write(tmp_path))
    with pytest.raises(HarnessError, match="item 'q1' has several correct choices \\[0, 1\\].*one correct choice"):
        calibrate_run(store, run)
    assert not store.calibration(run)  # refused before anything was scored


def test_mc1_task_in_the_truthfulqa_form_is_acc_on_the_first_choice(tmp_path: Path) -> None:
    folder = write(tmp_path, {"choices": "{{ mc1_targets.choices }}", "target": "0", "target_format": "choice"})
    store, run = _run(tmp_path, folder)
    for row in store.items([run]):
        logprobs = [r["logprob"] for r in row.response]
        scores = row.scores
        assert row.target == 0
        assert scores["mc1"] == scores["acc"] == float(int(np.argmax(logprobs)) == 0)
