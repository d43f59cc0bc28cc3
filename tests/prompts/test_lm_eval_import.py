"""``harness import lm-eval``: the task YAMLs that ship inside lm-eval 0.4.13, converted, render
exactly the prompts, continuations and targets lm-eval's own ``ConfigurableTask`` renders for the
same rows (hub-shaped rows made from ../shared/data; the first-n sampler on both sides), and
what cannot be converted (``!function``, ``process_docs``) is refused naming the line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.app import main
from harness.runner.planning import plan, prepare, selector_for
from harness.runner.spec import ExperimentSpec

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is installed by scripts/test.sh")


def jsonl(relative: str, n: int, start: int = 0, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (DATA / relative).read_text(encoding="utf-8").split("\n") if line.strip()]  # not splitlines: \u2028 in text
    return [r for r in rows if keep(r)][start:start + n]


def arc(row: dict[str, Any]) -> dict[str, Any]:  # the AI2 rows as the hub's allenai/ai2_arc has them
    return {"id": row["id"], "question": row["question"]["stem"], "answerKey": row["answerKey"],
            "choices": {"text": [c["text"] for c in row["question"]["choices"]], "label": [c["label"] for c in row["question"]["choices"]]}}


def boolq(row: dict[str, Any]) -> dict[str, Any]:  # as aps/super_glue's boolq
    return {"question": row["question"], "passage": row["passage"], "idx": 0, "label": int(row["answer"])}


CASES = {  # task -> (test rows, few-shot rows, shots)
    "arc_easy": (lambda: [arc(r) for r in jsonl("arc_easy/test.jsonl", 12)], lambda: [arc(r) for r in jsonl("arc_easy/validation.jsonl", 5)], 3),
    "arc_challenge": (lambda: [arc(r) for r in jsonl("arc_challenge/test.jsonl", 12)],
                      lambda: [arc(r) for r in jsonl("arc_challenge/validation.jsonl", 5)], 2),
    "boolq": (lambda: [boolq(r) for r in jsonl("boolq/validation.jsonl", 10, 10)], lambda: [boolq(r) for r in jsonl("boolq/validation.jsonl", 5)], 2),
    "mmlu_anatomy": (lambda: jsonl("mmlu/test.jsonl", 12, keep=lambda r: r["subject"] == "anatomy"),
                     lambda: jsonl("mmlu/dev.jsonl", 5, keep=lambda r: r["subject"] == "anatomy"), 5),
    "gsm8k": (lambda: jsonl("gsm8k/test.jsonl", 8, 10), lambda: jsonl("gsm8k/test.jsonl", 5), 3),
}


def write(rows: list[dict[str, Any]], path: Path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", list(CASES))
def test_a_converted_task_renders_what_lm_eval_renders(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    from harness.prompts.lm_eval_import import lm_eval_yaml

    make_tests, make_pool, shots = CASES[name]
    tests, pool = make_tests(), make_pool()
    files = {"test": write(tests, tmp_path / "test.jsonl"), "fewshot": write(pool, tmp_path / "fewshot.jsonl")}
    folder = tmp_path / "converted" / name
    assert main(["import", "lm-eval", name, "-o", str(folder), "--json"]) == 0
    capsys.readouterr()
    spec = yaml.safe_load((folder / "task.yaml").read_text(encoding="utf-8"))
    spec["data"] = files  # the same rows for both sides (the hub sources are tested in tests/tasks/test_sources.py)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")

    config = load_yaml(lm_eval_yaml(name))  # lm-eval's own loader: its include chain
    config = {k: v for k, v in config.items() if k not in ("include", "tag", "group")}
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {"test": files["test"], "train": files["fewshot"]}},
                  test_split="test", validation_split=None, training_split="train", fewshot_split="train", fewshot_config={"sampler": "first_n"})
    theirs = ConfigurableTask(config=config)
    docs = list(theirs.test_docs())

    for k in (0, shots):
        experiment = ExperimentSpec(tasks=[str(folder)], shots=[k], selectors=["first_k"], prompts=["lm_eval"], limit=len(tests))
        cell = plan(experiment)[0]
        selector = selector_for(cell)
        for pos, (item, doc) in enumerate(zip(cell.items, docs)):
            rendered = prepare(cell, pos, item, selector).rendered
            assert rendered.prompt == theirs.fewshot_context(doc, k), (name, k, item.id)
            if theirs.OUTPUT_TYPE == "multiple_choice":
                delimiter = theirs.config.target_delimiter
                assert rendered.continuations == tuple(delimiter + c for c in theirs.doc_to_choice(doc)), (name, item.id)
                assert item.target == theirs.doc_to_target(doc), (name, item.id)
            else:
                assert item.target == (theirs.doc_to_target(doc),)


def test_python_code_and_process_docs_are_refused_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "lm-eval", "hellaswag", "-o", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert "hellaswag.yaml line 10" in err and "!function utils.process_docs" in err and "Traceback" not in err
    path = tmp_path / "mine.yaml"
    path.write_text("task: mine\ndataset_path: x/y\noutput_type: multiple_choice\ntest_split: test\n"
                    "doc_to_text: !function utils.text\ndoc_to_choice: [a, b]\ndoc_to_target: 0\n", encoding="utf-8")
    assert main(["import", "lm-eval", str(path), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml line 5" in err and "never runs it" in err
    assert main(["import", "lm-eval", "winogrande", "-o", str(tmp_path / "w")]) == 2
    assert "doc_to_text: !function preprocess_winogrande.doc_to_text" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing half-written


@pytest.mark.slow
def test_the_converted_arc_easy_predicts_what_lm_eval_predicts_on_the_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance story (b): lm-eval's arc_easy YAML converted; on the embedded model, 100 items,
    the same predictions as lm-eval itself (HFLM, float32, CPU) on the same rows, 0-shot."""
    from lm_eval import simple_evaluate
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks._yaml_loader import load_yaml

    from harness.backends import ModelSpec
    from harness.backends.hf.embedded import embedded_model_path
    from harness.prompts.lm_eval_import import lm_eval_yaml
    from harness.runner.execute import run_experiment
    from harness.store.store import Store

    n = 100
    rows = [arc(r) for r in jsonl("arc_easy/test.jsonl", n)]
    files = {"test": write(rows, tmp_path / "test.jsonl"), "fewshot": write([arc(r) for r in jsonl("arc_easy/validation.jsonl", 5)],
                                                                          tmp_path / "fewshot.jsonl")}
    folder = tmp_path / "arc_easy_lm"
    assert main(["import", "lm-eval", "arc_easy", "-o", str(folder), "--json"]) == 0
    capsys.readouterr()
    spec = yaml.safe_load((folder / "task.yaml").read_text(encoding="utf-8"))
    (folder / "task.yaml").write_text(yaml.safe_dump({**spec, "data": files}), encoding="utf-8")
    experiment = ExperimentSpec(tasks=[str(folder)], shots=[0], prompts=["lm_eval"], limit=n, models=[ModelSpec(dtype="float32")])
    store = Store(tmp_path / "h.db")
    run = run_experiment(experiment, store, show_progress=False).run_id
    ours = {r.position: [x["logprob"] for x in r.response] for r in store.items([run])}

    config = {k: v for k, v in load_yaml(lm_eval_yaml("arc_easy")).items() if k not in ("include", "tag", "group")}
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {"test": files["test"]}}, test_split="test",
                  validation_split=None, training_split=None)
    model = HFLM(pretrained=str(embedded_model_path()), dtype="float32", batch_size=8, device="cpu")
    output = simple_evaluate(model=model, tasks=[ConfigurableTask(config=config)], limit=n, log_samples=True, bootstrap_iters=0)
    samples = sorted(output["samples"]["arc_easy"], key=lambda s: s["doc_id"])  # type: ignore[index]
    theirs = {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in samples}
    argmax = lambda v: max(range(len(v)), key=v.__getitem__)  # noqa: E731
    same = sum(argmax(ours[i]) == argmax(theirs[i]) for i in theirs)
    worst = max(abs(a - b) for i in theirs for a, b in zip(ours[i], theirs[i]))
    assert len(theirs) == len(ours) == n
    assert same == n and worst < 1e-3, f"{same}/{n} predictions equal to lm-eval's, max |Δ log-prob| {worst:.1e}"


def test_a_group_becomes_one_task_folder_per_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """lm-eval's mmlu group (groups of groups of a tag) -> its 57 subject tasks; each renders as lm-eval's did above."""
    assert main(["import", "lm-eval", "mmlu", "-o", str(tmp_path / "mmlu"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    folders = {Path(t["folder"]).name for t in out["tasks"]}
    assert len(folders) == 57 and {"mmlu_anatomy", "mmlu_abstract_algebra", "mmlu_world_religions"} <= folders
    spec = yaml.safe_load((tmp_path / "mmlu" / "mmlu_anatomy" / "task.yaml").read_text(encoding="utf-8"))
    assert spec["data"]["test"] == {"hf": {"path": "cais/mmlu", "name": "anatomy", "split": "test"}}
    assert spec["data"]["fewshot"]["hf"]["split"] == "dev"


def test_piqa_style_choices_from_fields_and_a_field_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """piqa (not in ../shared/data): rows of its shape made from ARC-Easy's, rendered by both sides."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    from harness.prompts.lm_eval_import import lm_eval_yaml

    rows = [{"goal": r["question"]["stem"], "sol1": r["question"]["choices"][0]["text"], "sol2": r["question"]["choices"][1]["text"],
             "label": i % 2} for i, r in enumerate(jsonl("arc_easy/test.jsonl", 10))]
    files = {"test": write(rows, tmp_path / "test.jsonl"), "fewshot": write(rows[:3], tmp_path / "fewshot.jsonl")}
    folder = tmp_path / "piqa"
    assert main(["import", "lm-eval", "piqa", "-o", str(folder)]) == 0
    spec = yaml.safe_load((folder / "task.yaml").read_text(encoding="utf-8"))
    (folder / "task.yaml").write_text(yaml.safe_dump({**spec, "data": files}), encoding="utf-8")
    config = {k: v for k, v in load_yaml(lm_eval_yaml("piqa")).items() if k not in ("include", "tag", "group")}
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {"test": files["test"]}}, test_split="test",
                  validation_split=None, training_split=None)
    theirs = ConfigurableTask(config=config)
    cell = plan(ExperimentSpec(tasks=[str(folder)], prompts=["lm_eval"], limit=10))[0]
    for pos, (item, doc) in enumerate(zip(cell.items, theirs.test_docs())):
        rendered = prepare(cell, pos, item, None).rendered
        assert rendered.prompt == theirs.fewshot_context(doc, 0)
        assert rendered.continuations == tuple(" " + c for c in theirs.doc_to_choice(doc)) and item.target == theirs.doc_to_target(doc)
