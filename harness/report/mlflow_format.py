"""A stored run as MLflow runs: one MLflow run per harness cell, so a team's MLflow UI (or any
MLflow client) lists prompt variants, shot counts and checkpoints side by side.

Each cell's run carries the cell as params (task, prompt, shots, selector, model, harness run and
cell ids, prompt sha256), its metrics with lm-eval's definitions (``acc``, ``acc_stderr``; corpus
metrics without a stderr, see ``lm_eval_format.metric_values``), tags naming the harness run, and
the cell's items as an ``items.jsonl`` artifact (the rows of ``harness show``'s JSONL). These are
point values: the comparison's verdicts and CIs are ``harness compare``'s, not MLflow's.

A ``file://`` tracking URI is the simplest offline target; MLflow 3 refuses new file stores
unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this sets for a ``file://`` URI the user names (or
the default ``file://<out>/mlruns``); ``sqlite:///...`` and servers work as MLflow documents.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from harness.core.deps import require
from harness.report.lm_eval_format import metric_values
from harness.store import Store, item_row


@dataclass(frozen=True)
class Logged:
    experiment_id: str
    run_ids: list[str]


def export_mlflow(store: Store, run_id: str, tracking_uri: str, experiment: str = "harness") -> Logged:
    require("mlflow", "mlflow", "mlflow-skinny", "harness export --format mlflow")
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    logged = []
    for cell in store.cells([run_id]):
        items = store.items([run_id], cell.cell_id)
        values = metric_values(store, cell, items)
        name = f"{cell.task} · {cell.prompt} · {cell.shots}-shot · {cell.selector} · {cell.model}"
        run = client.create_run(experiment_id, run_name=name, tags={"harness.run": run_id, "harness.cell": cell.cell_id})
        params = {"task": cell.task, "prompt": cell.prompt, "shots": cell.shots, "selector": cell.selector, "model": cell.model,
                  "harness_run": run_id, "cell_id": cell.cell_id, "prompt_sha256": cell.prompt_sha256, "n_items": len(items)}
        for key, value in params.items():
            client.log_param(run.info.run_id, key, str(value)[:500])
        for key, value in values.items():
            if isinstance(value, float):
                client.log_metric(run.info.run_id, key.removesuffix(",none"), value)
        lines = "".join(json.dumps(item_row(i, cell), ensure_ascii=False) + "\n" for i in items)
        client.log_text(run.info.run_id, lines, "items.jsonl")
        client.set_terminated(run.info.run_id)
        logged.append(run.info.run_id)
    return Logged(experiment_id, logged)
