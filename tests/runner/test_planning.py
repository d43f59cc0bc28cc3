"""Planning checks every item before any model call: a template that fails on row 100 (or on one demonstration
of the pool) is refused by ``plan``, naming the task, template and item, before a run or a backend exists;
a folder the experiment names must exist; zero-shot cells reuse the renderings the check made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.backends.scripted import ScriptedBackend
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.planning import plan, prepare
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import cli, write_task

READS_HINT = "{% macro answer(choice, index) %} {{ choice }}{% endmacro %}{% for s in shots %}{{ s.hint }} {{ s.input }}{{ s.answer }}\n{% endfor %}" \
             "{{ hint }} {{ input }}\nA:"


def _break_row(path: Path, line: int, drop: str) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for number, row in enumerate(rows, start=1):
        row.setdefault("hint", "h")
        if number == line:
            del row[drop]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _spec(tmp_path: Path, **fields: Any) -> ExperimentSpec:
    return ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=[{"backend": "scripted", "model": "m"}], **fields)


class Recording(ScriptedBackend):
    def loglikelihood(self, requests: Any) -> Any:
        raise AssertionError("a request reached the backend")


def test_a_template_error_in_row_100_is_found_before_any_backend_call(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "tasks", rows=150, templates={"plain": READS_HINT})
    _break_row(folder / "test.jsonl", 101, "hint")
    _break_row(folder / "fewshot.jsonl", 0, "hint")
    spec = _spec(tmp_path)
    with pytest.raises(HarnessError) as info:
        plan(spec)
    message = str(info.value)
    assert "task 'toy', template 'plain'" in message and "item 't100'" in message and "'hint' is undefined" in message and "plain.jinja" in message
    store = Store(tmp_path / "h.db")
    try:
        with pytest.raises(HarnessError, match="item 't100'"):
            run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: Recording(spec.models[0])})
        assert store.runs() == []  # no run was even created
    finally:
        store.close()


def test_a_demonstration_that_fails_is_named_with_its_split(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "tasks", rows=5, fewshot_rows=30, templates={"plain": READS_HINT})
    _break_row(folder / "test.jsonl", 0, "hint")
    _break_row(folder / "fewshot.jsonl", 21, "hint")
    assert len(plan(_spec(tmp_path))) == 1  # zero-shot: the pool is not used, so not checked
    with pytest.raises(HarnessError) as info:
        plan(_spec(tmp_path, shots=[0, 2]))
    assert "task 'toy', template 'plain', demonstration 'f20' (split 'fewshot', shown with item 't0')" in str(info.value)


@pytest.mark.parametrize("key", ["tasks_dirs", "prompts_dirs", "data_dirs"])
def test_a_folder_the_experiment_names_must_exist(tmp_path: Path, key: str) -> None:
    write_task(tmp_path / "tasks")
    fields: dict[str, Any] = {key: [str(tmp_path / "missing")]}
    if key == "tasks_dirs":
        fields = {"tasks_dirs": [str(tmp_path / "tasks"), str(tmp_path / "missing")]}
        spec = ExperimentSpec(tasks=["toy"], models=[{"backend": "scripted", "model": "m"}], **fields)
    else:
        spec = _spec(tmp_path, **fields)
    with pytest.raises(HarnessError) as info:
        plan(spec)
    assert f"'{key}'" in str(info.value) and "missing' does not exist" in str(info.value)


def test_zero_shot_cells_reuse_the_checked_renderings(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", rows=6)
    cells = plan(_spec(tmp_path, shots=[0, 1]))
    zero, one = (c for c in cells if c.shots == 0), (c for c in cells if c.shots == 1)
    zero_cell, one_cell = next(zero), next(one)
    assert set(zero_cell.zero_shot) == {i.id for i in zero_cell.items} and not one_cell.zero_shot
    item = zero_cell.items[3]
    assert prepare(zero_cell, 3, item, None).rendered is zero_cell.zero_shot[item.id][1]
    fresh = prepare(zero_cell, 3, type(item)(**{**item.__dict__, "input": "changed"}), None)  # a replaced item renders afresh
    assert "changed" in str(fresh.rendered.prompt)


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: [toy]\nshots: [0]\nshots: [5]\n", "exp.yaml line 3, column 1: invalid YAML: key 'shots' appears twice"),
    ("tasks: [toy]\ndata_dirs: [{missing}]\n", "exp.yaml: field 'data_dirs': folder '{missing}' does not exist"),
    ("tasks: [toy]\nprompts_dirs: [{missing}]\n", "exp.yaml: field 'prompts_dirs': folder '{missing}' does not exist"),
])
def test_the_cli_refuses_a_bad_experiment_file_before_a_run_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                                                   message: str) -> None:
    write_task(tmp_path / "tasks")
    missing = str(tmp_path / "missing")
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(text.format(missing=missing))
    db = tmp_path / "h.db"
    assert cli("run", experiment, "--tasks-dir", tmp_path / "tasks", "--model", "scripted:m", "--db", db, "--quiet") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(missing=missing) in err and "Traceback" not in err
    assert not db.exists()  # the store is opened once the run is planned
