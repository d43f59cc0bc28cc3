"""`harness rescore`: scores recomputed from stored responses reproduce the stored ones
exactly, a new metric is added without the model, and a changed filter re-extracts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.decide_support import toy_task
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[2]


def _scores(store: Store, run: str) -> dict[tuple[str, str], dict[str, float]]:
    return {(r.cell_id, r.item_id): r.scores for r in store.items([run])}


def forbid_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, any attempt to build or call a backend fails the test."""
    import harness.backends.base as base
    import harness.runner.execute as execute
    import harness.runner.planning as planning
    import harness.runner.provenance as provenance
    from harness.backends.scripted import ScriptedBackend

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rescore tried to use a model")

    for module, name in ((base, "backend_class"), (base, "load_backend"), (execute, "backend_class"), (planning, "backend_class"), (provenance, "backend_class")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(ScriptedBackend, "loglikelihood", refuse)
    monkeypatch.setattr(ScriptedBackend, "generate", refuse)


def test_rescore_reproduces_and_adds_a_metric(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toy_task(tmp_path / "tasks", rows=40, metrics=["acc"])
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=["scripted:m"], shots=[0, 2])
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False).run_id
    forbid_models(monkeypatch)
    before = _scores(store, run)
    assert all(set(s) == {"acc"} for s in before.values())

    summary = rescore_run(store, run, ["acc_norm"], tasks_dirs=[tmp_path / "tasks"])
    assert summary.reproduced and summary.items == 4 * 40
    assert [(c.metric, c.items, c.same) for c in summary.checks] == [("acc", 160, 160)]
    assert summary.added == ["acc_norm"] and summary.written
    after = _scores(store, run)
    assert all(after[k]["acc"] == before[k]["acc"] and after[k]["acc_norm"] in (0.0, 1.0) for k in before)
    # acc_norm divides by continuation length; the toy choices differ in length, so it is a real recomputation
    assert any(after[k]["acc_norm"] != after[k]["acc"] for k in after)
    # the JSONL mirror follows
    mirror = [json.loads(line) for line in (db_path.parent / run / "items.jsonl").read_text().splitlines()]
    assert all("acc_norm" in row["scores"] for row in mirror)
    # the new metric is usable right away
    assert cli("compare", "--db", db_path, run, "--metric", "acc_norm", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["metric"] == "acc_norm"


def test_rescore_cli_when_the_task_is_gone(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toy_task(tmp_path / "tasks", rows=30)
    assert cli("run", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--model", "skilled:0.7", "--quiet") == 0
    capsys.readouterr()
    run = Store(db_path).runs()[-1].id
    before = _scores(Store(db_path), run)
    shutil.rmtree(tmp_path / "tasks" / "toy")
    forbid_models(monkeypatch)
    assert cli("rescore", "--db", db_path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reproduced"] and data["items"] == 60
    assert "task not found" in data["task_sources"]["toy"]
    assert _scores(Store(db_path), run) == before
    assert cli("rescore", "--db", db_path) == 0
    assert "acc: 60/60 items reproduced exactly" in capsys.readouterr().out


def test_rescore_generate_task_with_a_changed_filter(tmp_path: Path, db_path: Path) -> None:
    task_dir = tmp_path / "tasks" / "arithmetic"
    shutil.copytree(ROOT / "tasks" / "arithmetic", task_dir)
    spec = ExperimentSpec(tasks=["arithmetic"], tasks_dirs=[str(tmp_path / "tasks")], prompts=["equation"],
                          models=["scripted:calc"], limit=30)
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False).run_id
    extracted = {r.item_id: r.extracted for r in store.items([run])}
    assert rescore_run(store, run, write=False).reproduced  # dry run: unchanged and nothing written
    # a new extraction rule: keep only the first digit
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    data["filters"] = [{"regex": "([0-9])"}]
    (task_dir / "task.yaml").write_text(yaml.safe_dump(data))
    summary = rescore_run(store, run)
    now = {r.item_id: r.extracted for r in store.items([run])}
    assert all(now[i] == (extracted[i] or "")[:1] or now[i] is None for i in extracted)
    assert sum(now[i] != extracted[i] for i in extracted) > 10
    assert summary.checks[0].metric == "exact_match"


def test_rescore_rejects_metrics_of_another_task_type(tmp_path: Path, db_path: Path) -> None:
    toy_task(tmp_path / "tasks", rows=5)
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=["scripted:x"])
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False).run_id
    with pytest.raises(HarnessError, match="does not apply"):
        rescore_run(store, run, ["exact_match"])
    with pytest.raises(HarnessError, match="unknown metric"):
        rescore_run(store, run, ["acc_nrom"])
