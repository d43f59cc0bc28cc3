"""What a run was: the spec, hashes of task files, data and templates, model identities, versions;
the run identity (config hash) and cache keys are made from it."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from harness.backends import Backend, backend_class
from harness.core.fingerprint import content_sha256
from harness.fewshot.selectors import pool_is_split_warning, unshown_shots_warning
from harness.requests import Request
from harness.runner.anchors import anchors_by_task
from harness.runner.planning import Cell
from harness.runner.spec import ExperimentSpec
from harness.tasks.subsets import describe, subset_record
from harness.tasks.task import Task


# -- provenance ---------------------------------------------------------------------
def model_identities(spec: ExperimentSpec, backends: Mapping[str, Backend] | None = None) -> list[dict[str, Any]]:
    """Each model's identity, in ``spec.models`` order: a ready backend's own (tuning adds its
    step), else its class's ``identity_of`` (content fingerprints; no model is loaded)."""
    ready = backends or {}
    return [ready[m.label].identity if m.label in ready else backend_class(m).identity_of(m) for m in spec.models]


def config_snapshot(spec: ExperimentSpec, cells: Sequence[Cell], identities: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the run was: the spec, hashes of every task file, data file and template, and the
    models' identities (``model_identities`` unless given), so a changed model is a new run."""
    tasks: dict[str, Any] = {}
    for cell in cells:
        task = cell.task
        entry = tasks.setdefault(task.name, {"yaml_sha256": content_sha256(task.yaml_path), "data": {}, "templates": {}})
        for split in {spec.split, spec.fewshot_split}:
            if task.has_split(split) and (split == spec.split or cell.shots > 0):
                entry["data"][split] = task.split_fingerprint(split)
        entry["templates"][cell.template.name] = cell.template.sha256
        if task.labels:  # classification: corpus metrics (macro-F1, per-class report) map gold indices to labels
            entry["labels"] = list(task.labels)
        if task.group and task.spec.subtasks:  # a member of a group task: compare adds micro/macro rows
            entry["group"] = {"name": task.group, "aggregate": list(task.spec.subtasks.aggregate)}
    models = list(identities) if identities is not None else model_identities(spec)
    # unset sample/stratify/race are left out, so a run without them keeps the config hash it had before they existed
    unset = {name for name in ("sample", "stratify", "race") if getattr(spec, name) is None}
    unset.add("prices")  # the cost ledger's prices change no result: kept beside the run (Store.write_prices), not in its identity
    if not spec.anchors:  # a run without --anchors keeps the config hash it had before anchors existed
        unset.add("anchors")
    config: dict[str, Any] = {"spec": spec.model_dump(mode="json", exclude=unset), "tasks": tasks, "models": models}
    if spec.anchors:  # an anchored run evaluates only the anchor items: the config names each file and what it holds
        config["anchors"] = {task: {"file": path, "identity": a.identity(), "k": a.k, "of": len(a.items), "metric": a.metric}
                             for task, (path, a) in anchors_by_task(spec.anchors).items()}
    subsets, warnings = _subsets_and_warnings(spec, cells)
    if subsets:
        config["subsets"] = subsets
    if warnings:
        config["warnings"] = warnings
    return config


def _subsets_and_warnings(spec: ExperimentSpec, cells: Sequence[Cell]) -> tuple[dict[str, Any], list[str]]:
    """Per task, the evaluated subset (harness/tasks/subsets.py: how, size, label counts, warnings) when it is not the
    whole split or was sampled/stratified; and every warning of the run, one line each: subsets, then few-shot
    pools that are the evaluated split and templates that never show their demonstrations (harness/fewshot/selectors.py)."""
    how = describe(spec.limit, spec.sample, spec.stratify, spec.seed)
    subsets: dict[str, Any] = {}
    lines: list[str] = []
    shots_by_template: dict[str, tuple[Any, set[int]]] = {}
    pooled: dict[str, Task] = {}
    for cell in cells:
        task = cell.task
        if how is not None and task.name not in subsets:
            split = task.items(spec.split)
            asked = spec.sample if spec.sample is not None else spec.limit
            if asked is not None and asked > len(split):  # the table's n says it too, but a typo'd size should not pass unsaid
                flag = "--sample" if spec.sample is not None else "--limit"
                lines.append(f"task '{task.name}': {flag} {asked} is more than split '{spec.split}' has: all {len(split)} items are evaluated")
            if len(cell.items) < len(split) or spec.subset_key() is not None:
                subsets[task.name] = subset_record(task, cell.items, split, how)
                lines += subsets[task.name]["warnings"]
        if cell.shots > 0:
            pooled.setdefault(task.name, task)
            shots_by_template.setdefault(str(cell.template.path), (cell.template, set()))[1].add(cell.shots)
    lines += [line for task in pooled.values() if (line := pool_is_split_warning(task, spec.split, spec.fewshot_split))]
    lines += [line for template, shots in shots_by_template.values() if (line := unshown_shots_warning(template, sorted(shots)))]
    return subsets, list(dict.fromkeys(lines))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("harness", "torch", "transformers", "peft", "openai"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def stable_hash(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``: the run identity (config hash) and run-id salt."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def cache_key(identity_json: str, request: Request) -> str:
    return hashlib.sha256(f"{identity_json}\x00{request.key()}".encode()).hexdigest()


