"""``harness export --format mlflow``: one MLflow run per cell, read back with MLflow's own client
from a file:// store, holding the cell's params, the numbers of the lm-eval export and its items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cli.app import main
from harness.store.store import Store

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_a_run_exported_to_mlflow_reads_back_with_mlflows_client(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="mlflow-skinny is installed by scripts/test.sh")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    db = str(tmp_path / "h.db")
    assert main(["run", "--task", "arc_easy", "--data-dir", str(DATA), "--shots", "0", "2", "--model", "scripted:m", "--limit", "20",
                 "--db", db, "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["export", run_id, "--format", "mlflow", "-o", str(tmp_path / "out"), "--db", db, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tracking_uri"] == (tmp_path / "out" / "mlruns").as_uri()
    assert main(["export", run_id, "--format", "lm-eval", "-o", str(tmp_path / "lm"), "--db", db]) == 0
    results = json.loads(next((tmp_path / "lm").rglob("results_*.json")).read_text(encoding="utf-8"))["results"]

    client = MlflowClient(out["tracking_uri"])
    runs = client.search_runs([out["experiment_id"]])
    store = Store(db)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    assert len(runs) == len(cells) == 4 and {r.info.run_id for r in runs} == set(out["mlflow_runs"])
    for run in runs:
        cell = cells[run.data.params["cell_id"]]
        assert run.data.params["task"] == "arc_easy" and run.data.params["shots"] == str(cell.shots)
        assert run.data.tags["harness.run"] == run_id and run.info.status == "FINISHED"
        entry = results[f"arc_easy|{cell.prompt}|{cell.shots}-shot|{cell.selector}"]
        assert run.data.metrics["acc"] == pytest.approx(entry["acc,none"]) and run.data.metrics["acc_stderr"] == pytest.approx(entry["acc_stderr,none"])
        local = client.download_artifacts(run.info.run_id, "items.jsonl", str(tmp_path / "dl" / run.info.run_id))
        rows = [json.loads(line) for line in Path(local).read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 20 and {r["cell_id"] for r in rows} == {cell.cell_id}
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"


def test_export_without_a_destination_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", "mlflow", "--db", str(tmp_path / "h.db")]) == 2
    err = capsys.readouterr().err
    assert "give -o/--output OUT or --tracking-uri" in err and "Traceback" not in err
