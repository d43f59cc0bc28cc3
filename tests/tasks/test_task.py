import json
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.scoring.checks import check_task
from harness.tasks.sources import FileSource
from harness.tasks.task import discover_tasks, find_task, load_task
from tests.core.test_yamlfile import billion_laughs
from tests.helpers import cli, write_task


def test_loads_items_with_derived_fields(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    items = task.items("test")
    assert len(items) == 12
    assert items[1].id == "t1" and items[1].choices == ("yes 1", "no 1", "maybe") and items[1].target == 1
    assert items[1].label == "1"


def test_target_may_be_choice_text(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"target": "{{ options[answer] }}"})
    assert [i.target for i in load_task(folder).items("test")[:3]] == [0, 1, 2]


def test_bundled_tasks_are_discovered() -> None:
    found = discover_tasks()
    assert {"capitals", "arithmetic"} <= set(found)
    assert len(find_task("capitals").items("test")) >= 150
    assert len(find_task("arithmetic").items("test")) >= 150


def _error(folder: Path, split: str = "test") -> str:
    with pytest.raises(HarnessError) as info:
        check_task(load_task(folder)).items(split)
    return str(info.value)


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    (folder / "task.yaml").write_text("name: x\ntype: [unclosed\n")
    message = _error(folder)
    assert "task.yaml" in message and "line" in message and "invalid YAML" in message


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    message = _error(write_task(tmp_path, spec={"metric": ["acc"]}))
    assert "unknown key 'metric'" in message and "Did you mean 'metrics'" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = _error(write_task(tmp_path, spec={"data": {"test": "test.jsonl", "fewshots": "x"}}))
    assert "unknown key 'data.fewshots'" in message and "Did you mean 'fewshot'" in message


def test_missing_field(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    text = (folder / "task.yaml").read_text().replace("input: '{{ question }}'\n", "")
    (folder / "task.yaml").write_text(text)
    assert "missing required field 'input'" in _error(folder)


def test_unknown_metric_and_filter(tmp_path: Path) -> None:
    message = _error(write_task(tmp_path, "a", spec={"metrics": ["accuracy"]}))
    assert "unknown metric 'accuracy'" in message and "Did you mean 'acc'" in message
    message = _error(write_task(tmp_path, "b", spec={"filters": ["numerc"]}))
    assert "unknown filter 'numerc'" in message and "Did you mean 'numeric'" in message


def test_metric_must_fit_task_type(tmp_path: Path) -> None:
    assert "does not apply to a multiple_choice task" in _error(write_task(tmp_path, spec={"metrics": ["exact_match"]}))


def test_broken_jsonl_line(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    lines = (folder / "test.jsonl").read_text().splitlines()
    lines[4] = '{"id": "t4", "question": '
    (folder / "test.jsonl").write_text("\n".join(lines))
    message = _error(folder)
    assert "test.jsonl line 5" in message and "not valid JSON" in message


def test_expression_on_missing_field_names_row(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"input": "{{ questoin }}"})
    message = _error(folder)
    assert "field 'input'" in message and "line 1" in message and "questoin" in message and "question" in message


def test_duplicate_ids(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    row = json.loads((folder / "test.jsonl").read_text().splitlines()[0])
    with open(folder / "test.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    assert "appears on line 1 and line 13" in _error(folder)


def test_missing_data_file_mentions_data_dir(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"data": {"test": "elsewhere/test.jsonl"}})
    message = _error(folder)
    assert "elsewhere/test.jsonl" in message and "--data-dir" in message


def test_data_dir_resolution(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"data": {"test": "sub/test.jsonl"}})
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (folder / "test.jsonl").rename(tmp_path / "data" / "sub" / "test.jsonl")
    assert len(load_task(folder, [tmp_path / "data"]).items("test")) == 12


def test_unknown_task_did_you_mean() -> None:
    with pytest.raises(HarnessError, match="Did you mean 'capitals'"):
        find_task("capitols")


def test_cluster_expression_gives_each_item_its_cluster(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"cluster": "{{ 'even' if answer % 2 == 0 else 'odd' }}"})
    items = load_task(folder).items("test")
    assert [i.cluster for i in items[:4]] == ["even", "odd", "even", "even"]  # answers 0, 1, 2, 0
    assert load_task(write_task(tmp_path / "plain")).items("test")[0].cluster is None  # undeclared: no cluster
    numeric = write_task(tmp_path / "numeric", spec={"cluster": "{{ answer }}"})
    assert [i.cluster for i in load_task(numeric).items("test")[:4]] == ["0", "1", "2", "0"]  # always text


def test_bad_cluster_expression_names_file_and_field(tmp_path: Path) -> None:
    missing = _error(write_task(tmp_path / "a", spec={"cluster": "{{ passage }}"}))
    assert "task.yaml" in missing and "field 'cluster'" in missing and "line 1" in missing and "passage" in missing
    syntax = _error(write_task(tmp_path / "b", spec={"cluster": "{{ question[ }}"}))
    assert "task.yaml" in syntax and "field 'cluster'" in syntax and "invalid expression" in syntax
    empty = _error(write_task(tmp_path / "c", spec={"cluster": "{{ none }}"}))
    assert "field 'cluster'" in empty and "line 1" in empty and "no value" in empty


def test_clusters_are_stored_per_item_and_exported(tmp_path: Path) -> None:
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec
    from harness.store.store import Store

    write_task(tmp_path, rows=6, spec={"cluster": "{{ 'group-' ~ (answer % 2) }}"})
    spec = ExperimentSpec.model_validate({"tasks": [str(tmp_path / "toy")], "models": ["scripted:m"]})
    store = Store(tmp_path / "h.db")
    summary = run_experiment(spec, store, show_progress=False)
    rows = store.items([summary.run_id])
    assert [(r.item_id, r.cluster) for r in rows] == [(f"t{i}", f"group-{i % 3 % 2}") for i in range(6)]
    exported = [json.loads(line) for line in (summary.run_dir / "items.jsonl").read_text().splitlines()]
    assert [e["cluster"] for e in exported] == [r.cluster for r in rows]


def test_shipped_passage_tasks_declare_their_clusters(shared_data: Path) -> None:
    for name, field in (("xquad", "context"), ("xquad_zh", "context"), ("boolq", "title")):
        task = find_task(name, data_dirs=[shared_data])
        items = task.items("test")
        assert all(i.cluster == str(i.row[field]) for i in items)
        assert 1 < len({i.cluster for i in items}) < len(items)  # real groups: fewer clusters than items
    assert len({i.cluster for i in find_task("xquad", data_dirs=[shared_data]).items("test")}) == 240  # XQuAD's 240 passages


# -- hostile and careless rows: one clean error naming task.yaml, the data file's line and the field --------------
def _rows_error(tmp_path: Path, rows: list[dict[str, object]], **spec: object) -> str:
    folder = write_task(tmp_path, spec=dict(spec) or None)
    (folder / "test.jsonl").write_text("".join(json.dumps({"id": f"t{i}", **row}) + "\n" for i, row in enumerate(rows)))
    return _error(folder)


GOOD = {"question": "q?", "options": ["yes", "no"], "answer": 0}


@pytest.mark.parametrize(("row", "message"), [
    ({**GOOD, "options": "yes or no"}, "expected a list of choices, got str 'yes or no'"),
    ({**GOOD, "options": ["yes"]}, "gave 1 distinct choice ['yes']; a multiple-choice item needs at least 2 different choices"),
    ({**GOOD, "options": ["yes", "yes"]}, "(2 given, all the same)"),
    ({**GOOD, "options": ["yes", ""]}, "choice 1 is empty"),
    ({**GOOD, "options": ["yes", None]}, "every choice must be text, got NoneType None"),
    ({**GOOD, "answer": True}, "target is the boolean true, not a choice index"),
    ({**GOOD, "answer": 5}, "target index 5 is out of range for 2 choices"),
    ({**GOOD, "answer": "maybe"}, "target 'maybe' is neither a choice index nor one of the choices ['yes', 'no']"),
])
def test_bad_choices_and_targets_name_the_line_and_field(tmp_path: Path, row: dict[str, object], message: str) -> None:
    text = _rows_error(tmp_path, [GOOD, GOOD, row])
    assert message in text, text
    assert "task.yaml: field '" in text and "test.jsonl line 3" in text


def test_a_target_text_shared_by_two_choices_is_ambiguous(tmp_path: Path) -> None:
    row = {**GOOD, "options": ["yes", "no", "yes"], "answer": "yes"}
    assert "is the text of several choices" in _rows_error(tmp_path, [row], target="{{ answer }}")
    assert load_task(write_task(tmp_path / "ok")).items()  # repeats beside two distinct choices are allowed (MMLU has them)


def test_a_row_error_echoes_a_bounded_value(tmp_path: Path) -> None:
    huge = {**GOOD, "options": "x" * 1_000_000}
    text = _rows_error(tmp_path, [huge])
    assert "expected a list of choices" in text and len(text) < 800


def test_a_one_label_classification_is_refused(tmp_path: Path) -> None:
    message = _error(write_task(tmp_path, spec={"type": "classification", "choices": None, "verbalizers": {"yes": "Yes"}}))
    assert "needs at least 2 labels" in message


def test_duplicate_yaml_keys_in_task_yaml_are_refused(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    (folder / "task.yaml").write_text((folder / "task.yaml").read_text() + "target: '{{ other }}'\n")
    message = _error(folder)
    assert "task.yaml line" in message and "key 'target' appears twice" in message


def test_a_non_utf8_task_yaml_is_an_error_and_discovery_still_lists_the_others(tmp_path: Path) -> None:
    write_task(tmp_path, name="good")
    bad = write_task(tmp_path, name="bad")
    (bad / "task.yaml").write_bytes((bad / "task.yaml").read_bytes() + "description: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8 text (byte 0xe9)" in _error(bad)
    assert {"good", "bad"} <= set(discover_tasks([tmp_path]))


@pytest.mark.parametrize(("content", "message"), [
    (None, "alias bomb"),
    (b"name: toy\nname: toy\n", "key 'name' appears twice"),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep"),
    ("description: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
])
def test_the_cli_refuses_hostile_task_yaml_with_exit_2_and_a_short_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str | None, message: str) -> None:
    folder = write_task(tmp_path)
    body = billion_laughs() if content is None else content
    (folder / "task.yaml").write_bytes(body if isinstance(body, bytes) else body.encode())
    assert cli("validate", folder) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and len(err) < 600


def test_a_group_reads_each_split_once_for_all_its_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_task(tmp_path, rows=12, spec={"subtasks": {"by": "{{ subject }}"}})
    for split in ("test", "fewshot"):
        path = folder / f"{split}.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "subject": f"s{i % 3}"}) + "\n" for i, r in enumerate(rows)))
    loads: list[str] = []
    original = FileSource.load
    monkeypatch.setattr(FileSource, "load", lambda self: loads.append(self.path.name) or original(self))
    members = load_task(folder).members()
    assert [m.name for m in members] == ["toy_s0", "toy_s1", "toy_s2"]
    assert [[i.id for i in m.items("test")] for m in members] == [[f"t{i}" for i in range(k, 12, 3)] for k in range(3)]
    assert [len(m.items("fewshot")) for m in members] == [3, 3, 2]
    assert loads == ["test.jsonl", "fewshot.jsonl"]
