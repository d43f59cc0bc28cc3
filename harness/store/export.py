"""A run's items mirrored as JSONL next to the database (``<db folder>/<run-id>/items.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.core.files import stale_temps, write_atomic
from harness.store.records import StoredCell, StoredItem
from harness.store.store import Store


def item_row(item: StoredItem, cell: StoredCell, *, score_columns: bool = False) -> dict[str, Any]:
    """An item with its cell's fields, as one flat record: a line of ``items.jsonl``, or (``score_columns``)
    a row of ``harness.load_results``'s DataFrame, with one ``score_<metric>`` column per score and no cluster."""
    row: dict[str, Any] = {
        "run_id": item.run_id, "cell_id": item.cell_id, "task": cell.task, "prompt_variant": cell.prompt,
        "shots": cell.shots, "selector": cell.selector, "model": cell.model, "item_id": item.item_id,
        "position": item.position, "prompt": item.prompt, "continuations": item.continuations,
        "demo_ids": item.demo_ids, "target": item.target, "response": item.response, "extracted": item.extracted,
    }
    if score_columns:
        return {**row, "latency_s": item.latency_s, "n_tokens": item.n_tokens, "cached": item.cached,
                **{f"score_{name}": value for name, value in item.scores.items()}}
    return {**row, "scores": item.scores, "latency_s": item.latency_s, "n_tokens": item.n_tokens, "cached": item.cached,
            "cluster": item.cluster}


def export_run(store: Store, run_id: str) -> Path:
    """Mirror the run's items as JSONL under ``<db folder>/<run-id>/`` (atomically; a killed export's temp files are removed).

    The runner calls it before ``Store.finish_run``: a finished run always has its mirror, and a run
    whose export was killed or hit a full disk is resumed (nothing left to evaluate) and exported again."""
    folder = store.path.parent / run_id
    for name in ("items.jsonl", "config.json"):
        for stale in stale_temps(folder / name):
            stale.unlink(missing_ok=True)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    lines = [json.dumps(item_row(item, cells[item.cell_id]), ensure_ascii=False) + "\n" for item in store.items([run_id])]
    write_atomic(folder / "items.jsonl", lines)
    config = {"run_id": run_id, "config": store.run_config(run_id), "cells": [c.__dict__ for c in cells.values()]}
    write_atomic(folder / "config.json", [json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"])
    return folder
