"""``harness anchors`` and ``harness run --anchors`` end to end on the scripted backend (harness/analysis/anchors.py,
harness/runner/anchors.py, harness/cli/anchors.py): the file records the fit and its cells, the estimate is checked
against the full run, an anchored run evaluates only the anchors and says so, and bad input is a clean error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.runner.anchors import load_anchors
from harness.store import Store
from tests.helpers import cli, write_task

MODELS = ["scripted:a", "scripted:b", "scripted:c", "scripted:d", "scripted:e"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("anchors")
    folder = write_task(root, rows=60)
    db = root / "h.db"
    args = ["run", "--task", folder, "--db", db, "--quiet", "--json"]
    for m in MODELS:
        args += ["--model", m]
    assert cli(*args) == 0
    run = Store.open_read_only(db).runs()[-1].id
    return folder, db, run


def test_fit_writes_the_file_and_estimate_checks_it(stored: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db, run = stored
    out = tmp_path / "toy.anchors.yaml"
    assert cli("anchors", "toy", "--from", run, "-k", "11", "-o", out, "--db", db) == 0
    anchors = load_anchors(out)
    assert anchors.task == "toy" and anchors.metric == "acc" and anchors.k == 11 and len(anchors.items) == 60
    assert len(anchors.anchor_ids()) == 11 and len(anchors.fitted_on) == 5
    assert {c.model for c in anchors.fitted_on} == {m for m in MODELS} and all(len(c.run_config_hash) == 64 for c in anchors.fitted_on)
    assert all(c.data_sha256 for c in anchors.fitted_on)
    raw = yaml.safe_load(out.read_text())  # plain YAML, read back with safe_load
    assert raw["format"] == "harness-anchors/1"
    again = tmp_path / "again.json"
    assert cli("anchors", "toy", "--from", run, "-k", "11", "-o", again, "--db", db) == 0  # deterministic: same anchors
    assert load_anchors(again).anchor_ids() == anchors.anchor_ids()
    capsys.readouterr()
    assert cli("anchors", "estimate", run, "--anchors", out, "--db", db, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["checked"] == 5
    for row in result["rows"]:
        assert row["low"] <= row["estimate"] <= row["high"] and row["full"] is not None
    assert cli("anchors", "estimate", run, "--anchors", out, "--db", db) == 0
    text = capsys.readouterr().out
    assert "checked against the full set on 5 cell(s)" in text and "not a held-out check" in text


def test_anchored_run_evaluates_only_the_anchors(stored: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db, run = stored
    out = tmp_path / "toy.anchors.json"
    assert cli("anchors", "toy", "--from", run, "-k", "8", "-o", out, "--db", db, "--exclude-prompt", "nothing") == 2  # unknown variant
    assert "no prompt variant 'nothing'" in capsys.readouterr().err
    assert cli("anchors", "toy", "--from", run, "-k", "8", "-o", out, "--db", db) == 0
    capsys.readouterr()
    assert cli("run", "--task", folder, "--model", "scripted:f", "--anchors", out, "--db", db, "--json", "--quiet") == 0
    result = json.loads(capsys.readouterr().out)
    store = Store.open_read_only(db)
    anchored = store.runs()[-1]
    assert anchored.config["anchors"]["toy"]["k"] == 8 and anchored.config["spec"]["anchors"] == [str(out)]
    (cell,) = store.cells([anchored.id])
    assert cell.n_planned == 8 and len(store.items([anchored.id])) == 8
    assert sorted(i.item_id for i in store.items([anchored.id])) == sorted(load_anchors(out).anchor_ids())
    (entry,) = result["anchors"]
    (row,) = entry["rows"]
    assert row["full"] is None and 0 <= row["low"] <= row["estimate"] <= row["high"] <= 1
    # the same model's full-run cell has another id: an anchored run never resumes or stands in for a full one
    assert cli("run", "--task", folder, "--model", "scripted:f", "--db", db, "--json", "--quiet") == 0
    capsys.readouterr()
    full = store.cells([store.runs()[-1].id])[0]
    assert full.cell_id != cell.cell_id and full.n_planned == 60
    assert cli("run", "--task", folder, "--model", "scripted:f", "--anchors", out, "--sample", "5", "--db", db) == 2
    assert "not both" in capsys.readouterr().err


def test_bad_input_is_a_clean_error(stored: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db, run = stored
    cases = [
        (["anchors", "toy", "--from", "nope", "-k", "8"], "nope"),  # unknown run
        (["anchors", "tyo", "--from", run, "-k", "8"], "Did you mean 'toy'"),  # unknown task
        (["anchors", "toy", "--from", run, "-k", "61"], "at most 60"),  # K larger than the items
        (["anchors", "toy", "--from", run, "-k", "3"], "at least 4"),
        (["anchors", "toy", "--from", run], "-k K"),
        (["anchors", "toy", "-k", "8"], "--from RUN"),
        (["anchors", "toy", "--from", run, "-k", "8", "--prompt", "plain", "--metric", "acc_norm", "--exclude-prompt", "plain"],
         "needs at least 3"),  # every cell left out
        (["anchors", "estimate", run], "--anchors FILE"),
        (["anchors", "estimate", run, "--anchors", tmp_path / "missing.yaml"], "does not exist"),
    ]
    for args, expected in cases:
        assert cli(*args, "--db", db) == 2, args
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (args, err)
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: harness-anchors/1\ntask: toy\n")
    assert cli("anchors", "estimate", run, "--anchors", bad, "--db", db) == 2
    assert "missing required field" in capsys.readouterr().err


def test_too_few_respondents_and_non_binary_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_task(tmp_path, rows=20)
    db = tmp_path / "h.db"
    assert cli("run", "--task", folder, "--model", "scripted:a", "--model", "scripted:b", "--db", db, "--quiet", "--json") == 0
    run = Store.open_read_only(db).runs()[-1].id
    capsys.readouterr()
    assert cli("anchors", "toy", "--from", run, "-k", "6", "--db", db) == 2
    err = capsys.readouterr().err
    assert "2 cell(s)" in err and "at least 3" in err and "harness formats" in err
    gen = write_task(tmp_path / "g", name="gen", rows=10, spec={"type": "generate", "metrics": ["chrf"], "choices": None,
                                                              "target": "{{ options[0] }}", "generation": {"max_tokens": 4}},
                     templates={"plain": "Q: {{ input }}\nA:"})
    assert cli("run", "--task", gen, "--model", "scripted:a", "--model", "scripted:b", "--model", "scripted:c", "--db", db, "--quiet", "--json") == 0
    run = Store.open_read_only(db).runs()[-1].id
    capsys.readouterr()
    assert cli("anchors", "gen", "--from", run, "-k", "4", "--db", db) == 2
    assert "not a 0/1" in capsys.readouterr().err


def test_group_task_anchors_cover_its_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A group task (as MMLU): one respondent per setting over every member, items keyed by member, the anchored run
    evaluates each member's anchors."""
    folder = write_task(tmp_path, name="grp", rows=45, spec={"subtasks": {"by": "answer"}})
    db = tmp_path / "h.db"
    args = ["run", "--task", folder, "--db", db, "--quiet", "--json"]
    for m in MODELS[:4]:
        args += ["--model", m]
    assert cli(*args) == 0
    run = Store.open_read_only(db).runs()[-1].id
    out = tmp_path / "grp.anchors.yaml"
    assert cli("anchors", "grp", "--from", run, "-k", "10", "-o", out, "--db", db) == 0
    anchors = load_anchors(out)
    assert len(anchors.items) == 45 and len(anchors.fitted_on) == 4 and {i.member for i in anchors.items} == {"grp_0", "grp_1", "grp_2"}
    capsys.readouterr()
    assert cli("run", "--task", folder, "--model", "scripted:f", "--anchors", out, "--db", db, "--json", "--quiet") == 0
    result = json.loads(capsys.readouterr().out)
    store = Store.open_read_only(db)
    anchored = store.runs()[-1].id
    evaluated = {(c.task, i.item_id) for c in store.cells([anchored]) for i in store.items([anchored], c.cell_id)}
    assert evaluated == {(i.member, i.id) for i in anchors.items if i.anchor}
    (entry,) = result["anchors"]
    assert len(entry["rows"]) == 1  # one respondent: the setting over the three members
