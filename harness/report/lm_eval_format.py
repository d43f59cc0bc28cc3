"""A stored run as lm-evaluation-harness writes its own: ``results_<date>.json`` and one
``samples_<task>_<date>.jsonl`` per task, per model folder, so lm-eval's tooling (``make_table``,
its results/samples file finders, leaderboards and dashboards built on them) reads harness runs.

A harness run is a matrix; lm-eval's files hold one entry per task. Each harness cell (task x
prompt x shots x selector) becomes one entry, named by the task alone when the model has one cell
for it, else ``task|prompt|k-shot|selector`` (the alias shows the same). Metrics are lm-eval's
``"<metric>,none"`` keys (harness has one extraction pipeline, not lm-eval's named filters); a mean
metric's stderr is lm-eval's (sample standard deviation / sqrt n); a corpus metric (BLEU, macro-F1)
has none ("N/A"), as in lm-eval. Items without a score for a metric are left out of it and
counted in ``n-samples`` (``effective`` is the number scored).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis.aggregates import corpus_items
from harness.core.errors import HarnessError
from harness.scoring import get_metric
from harness.store import Store, StoredCell, StoredItem
from harness.tasks.kinds import task_kind

FILTER = "none"
OUTPUT_TYPE = {"loglikelihood": "multiple_choice", "generation": "generate_until"}  # lm-eval's name for how a cell is scored


@dataclass(frozen=True)
class Written:
    results: list[Path]
    samples: list[Path]


def sanitize_model(name: str) -> str:
    """lm-eval's ``sanitize_model_name``: the model folder's name."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def sanitize_task(name: str) -> str:
    """lm-eval's ``sanitize_task_name``: the task part of a samples file's name."""
    return re.sub(r"\W", "_", name)


def entry_names(cells: Sequence[StoredCell]) -> dict[str, str]:
    """Cell id -> its entry's name among one model's cells."""
    per_task: dict[str, int] = {}
    for cell in cells:
        per_task[cell.task] = per_task.get(cell.task, 0) + 1
    return {c.cell_id: c.task if per_task[c.task] == 1 else f"{c.task}|{c.prompt}|{c.shots}-shot|{c.selector}" for c in cells}


def metric_values(store: Store, cell: StoredCell, items: Sequence[StoredItem]) -> dict[str, Any]:
    """``{"acc,none": .., "acc_stderr,none": ..}`` for the cell's metrics (corpus metrics over the
    items' predictions and references, as ``harness compare`` computes them)."""
    out: dict[str, Any] = {}
    pairs: dict[str, Any] | None = None  # the cell's (prediction, references), read once for all its corpus metrics
    for name in cell.metrics:
        metric = get_metric(name)
        scored = [i for i in items if name in i.scores]
        if not scored:
            continue
        values = [i.scores[name] for i in scored]
        if metric.aggregation == "corpus":
            pairs = pairs if pairs is not None else corpus_items(store, cell)
            out[f"{name},{FILTER}"] = metric.aggregate_corpus([pairs[i.item_id] for i in scored])
            out[f"{name}_stderr,{FILTER}"] = "N/A"
            continue
        mean = sum(values) / len(values)
        out[f"{name},{FILTER}"] = mean
        if len(values) > 1:
            variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
            out[f"{name}_stderr,{FILTER}"] = math.sqrt(variance / len(values))
        else:
            out[f"{name}_stderr,{FILTER}"] = "N/A"
    return out


def sample_record(item: StoredItem, cell: StoredCell) -> dict[str, Any]:
    """One line of a samples file, in lm-eval's fields: the request arguments, raw and filtered
    responses, and the item's scores (lm-eval puts each metric at the top level too)."""
    prompt = item.prompt if isinstance(item.prompt, str) else json.dumps(item.prompt, ensure_ascii=False)
    arguments: dict[str, Any]
    resps: list[Any]
    filtered: list[Any]
    if item.continuations is not None:  # log-likelihood: one request per continuation
        arguments = {f"gen_args_{i}": {"arg_0": prompt, "arg_1": c} for i, c in enumerate(item.continuations)}
        resps = [[[r.get("logprob"), r.get("is_greedy")]] for r in item.response]
        filtered = [[r.get("logprob"), r.get("is_greedy")] for r in item.response]
    else:
        arguments = {f"gen_args_{i}": {"arg_0": prompt, "arg_1": {}} for i in range(len(item.response))}
        resps = [[r.get("text")] for r in item.response]
        filtered = [item.extracted]
    return {
        "doc_id": item.position, "doc": {"id": item.item_id}, "target": item.target, "arguments": arguments, "resps": resps,
        "filtered_resps": filtered, "filter": FILTER, "metrics": list(item.scores), **item.scores,
        "harness": {"item_id": item.item_id, "demo_ids": item.demo_ids, "cell_id": cell.cell_id},
    }


def export_lm_eval(store: Store, run_id: str, out: Path) -> Written:
    """Write the run as lm-eval result files under ``out/<model>/``; returns what was written."""
    run = next((r for r in store.runs() if r.id == run_id), None)
    if run is None:
        raise HarnessError(f"no run {run_id!r} in {store.path}")
    cells = store.cells([run_id])
    items: dict[str, list[StoredItem]] = {}
    for item in store.items([run_id]):
        items.setdefault(item.cell_id, []).append(item)
    date_id = datetime.now(timezone.utc).isoformat().replace(":", "-").replace("+00-00", "")
    written = Written([], [])
    for model in dict.fromkeys(c.model for c in cells):
        mine = [c for c in cells if c.model == model]
        names = entry_names(mine)
        folder = out / sanitize_model(model)
        folder.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
                                    "higher_is_better": {}, "n-samples": {}}
        for cell in mine:
            name, rows = names[cell.cell_id], items.get(cell.cell_id, [])
            document["results"][name] = {"alias": name.replace("|", " · "), **metric_values(store, cell, rows)}
            document["group_subtasks"][name] = []
            document["n-shot"][name] = cell.shots
            document["higher_is_better"][name] = {m: get_metric(m).higher_is_better for m in cell.metrics}
            document["n-samples"][name] = {"original": cell.n_planned, "effective": len(rows)}
            document["configs"][name] = {
                "task": cell.task, "output_type": OUTPUT_TYPE[task_kind(cell.task_type).scoring],
                "num_fewshot": cell.shots, "fewshot_config": {"sampler": cell.selector}, "harness_prompt": cell.prompt,
                "harness_prompt_sha256": cell.prompt_sha256,
                "metric_list": [{"metric": m, "aggregation": get_metric(m).aggregation, "higher_is_better": get_metric(m).higher_is_better}
                                for m in cell.metrics],
            }
            path = folder / f"samples_{sanitize_task(name)}_{date_id}.jsonl"
            path.write_text("".join(json.dumps(sample_record(i, cell), ensure_ascii=False) + "\n" for i in rows), encoding="utf-8")
            written.samples.append(path)
        document["config"] = {"model": model, "model_args": json.dumps(mine[0].model_json, sort_keys=True), "harness_run": run_id,
                              "seed": run.seed}
        document["date"] = run.created_at
        document["harness_versions"] = run.versions
        path = folder / f"results_{date_id}.json"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        written.results.append(path)
    return written
