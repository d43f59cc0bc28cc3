"""A run's items mirrored as JSONL next to the database (``<db folder>/<run-id>/items.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.files import write_atomic
from harness.store.store import Store


def export_run(store: Store, run_id: str) -> Path:
    """Mirror the run's items as JSONL under ``<db folder>/<run-id>/`` (atomically)."""
    folder = store.path.parent / run_id
    cells = {c.cell_id: c for c in store.cells([run_id])}
    lines = []
    for row in store.items([run_id]):
        cell = cells[row["cell_id"]]
        record = {
            "run_id": run_id, "cell_id": row["cell_id"], "task": cell.task, "prompt_variant": cell.prompt,
            "shots": cell.shots, "selector": cell.selector, "model": cell.model, "item_id": row["item_id"],
            "position": row["position"], "prompt": json.loads(row["prompt_json"]),
            "continuations": json.loads(row["continuations_json"]) if row["continuations_json"] else None,
            "demo_ids": json.loads(row["demo_ids_json"]), "target": json.loads(row["target_json"]),
            "response": json.loads(row["response_json"]), "extracted": row["extracted"],
            "scores": json.loads(row["scores_json"]), "latency_s": row["latency_s"], "n_tokens": row["n_tokens"],
            "cached": bool(row["cached"]), "cluster": row["cluster"],
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_atomic(folder / "items.jsonl", lines)
    config = {"run_id": run_id, "config": store.run_config(run_id), "cells": [c.__dict__ for c in cells.values()]}
    write_atomic(folder / "config.json", [json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"])
    return folder
