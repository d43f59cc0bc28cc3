"""The CLI: user errors are one paragraph on stderr, exit code 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli, write_task


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=600)


def _assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_bad_yaml(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    (folder / "task.yaml").write_text("name: toy\n  bad: indent\n")
    _assert_user_error(_run("validate", str(folder)), "task.yaml line 2", "invalid YAML")


def test_unknown_key(tmp_path: Path) -> None:
    _assert_user_error(_run("validate", str(write_task(tmp_path, spec={"promts": ["plain"]}))), "unknown key 'promts'", "Did you mean 'prompts'")


def test_missing_field(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    text = (folder / "task.yaml").read_text().replace("target: '{{ answer }}'\n", "")
    (folder / "task.yaml").write_text(text)
    _assert_user_error(_run("validate", str(folder)), "missing required field 'target'")


def test_broken_jsonl(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    with open(folder / "test.jsonl", "a") as handle:
        handle.write("{not json\n")
    _assert_user_error(_run("validate", str(folder)), "test.jsonl line 13", "not valid JSON")


def test_undefined_template_variable(tmp_path: Path) -> None:
    folder = write_task(tmp_path, templates={"plain": "{{ input }}\n{{ choise }}"})
    _assert_user_error(_run("run", "--task", str(folder), "--model", "scripted:x", "--db", str(tmp_path / "h.db")),
                       "plain.jinja", "'choise' is undefined", "line 2")
    assert not (tmp_path / "h.db").exists() or json.loads(_run("show", "--db", str(tmp_path / "h.db"), "--json").stdout) == []


def test_sandbox_escape(tmp_path: Path) -> None:
    folder = write_task(tmp_path, templates={"plain": "{{ ''.__class__.__mro__ }}"})
    _assert_user_error(_run("validate", str(folder)), "plain.jinja", "unsafe")


def test_unknown_selector(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    _assert_user_error(_run("run", "--task", str(folder), "--shots", "2", "--selector", "balance", "--model", "scripted:x",
                            "--db", str(tmp_path / "h.db")), "unknown selector 'balance'", "Did you mean 'balanced'")


def test_unknown_metric(tmp_path: Path) -> None:
    _assert_user_error(_run("validate", str(write_task(tmp_path, spec={"metrics": ["exact"]}))), "unknown metric 'exact'", "exact_match")


def test_unknown_backend() -> None:
    _assert_user_error(_run("run", "--task", "capitals", "--model", "hff:gpt2"), "unknown backend 'hff'", "Did you mean 'hf'")


def test_experiment_file_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("tasks: [capitals]\nshot: [0]\n")
    _assert_user_error(_run("run", str(path)), "exp.yaml", "unknown key 'shot'", "Did you mean 'shots'")


def test_run_and_compare_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_task(tmp_path, templates={"plain": "{{ input }}", "qa": "Q: {{ input }}\nA:"}, spec={"prompts": ["plain", "qa"]})
    db = tmp_path / "h.db"
    assert cli("run", "--task", folder, "--model", "scripted:x", "--db", db, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["items_written"] == 24 and len(out["ranking"]) == 2
    assert cli("compare", "--db", db, "--json") == 0
    ranking = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in ranking] == [1, 2] and ranking[0]["mean"] >= ranking[1]["mean"]
    assert all(r["ci_low"] <= r["mean"] <= r["ci_high"] and r["n"] == 12 for r in ranking)


def test_tasks_lists_bundled(capsys: pytest.CaptureFixture) -> None:
    assert cli("tasks", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["capitals"]["type"] == "multiple_choice" and len(rows["capitals"]["prompts"]) >= 3
    assert rows["arithmetic"]["type"] == "generate" and rows["arithmetic"]["rows"] >= 150
