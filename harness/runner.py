"""The core loop: an experiment matrix -> cells -> items -> requests -> cache/backend -> store.

Read it top to bottom:
1. ``plan`` expands tasks x prompts x shots x selectors x models into Cells and renders one
   item of each, so a broken template fails before any model is loaded or anything written.
2. ``run_experiment`` finds an unfinished run with the same configuration (resume) or makes
   a new one, then for each cell evaluates only the items not yet stored, in chunks.
3. Each chunk: render prompts, look every request up in the response cache, send only the
   misses to the backend (loaded on the first miss, so a fully cached run never loads the
   model), score, and write items + new cache entries in one transaction.

"Same configuration" includes each model's identity (``Backend.identity_of``: its content
fingerprint and the settings that change its outputs), as does every cache key: a model
retrained or an adapter rewritten at the same path is a new run with no cached answers,
while an unchanged one is resumed (``harness ab`` reuses its finished run). Resumes and
cache hits are reported in one line each through ``log``, naming the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.backends import Backend, ModelSpec, backend_class, parse_model
from harness.backends.base import content_sha256
from harness.errors import HarnessError
from harness.fewshot import SELECTORS, Selector, draw_rng, pool_is_split_warning, unshown_shots_warning
from harness.progress import progress_bar
from harness.prompts import PromptTemplate, Rendered, load_prompt
from harness.requests import GenerateRequest, LoglikelihoodRequest, Request, Result, prompt_to_json, result_to_json
from harness.scoring import build_filter
from harness.scoring.scorer import build_outcome, score_outcome
from harness.store import CellRecord, ItemRecord, Store, write_atomic
from harness.subsets import describe, select_items, subset_record
from harness.tasks import Item, Task, find_task


class ExperimentSpec(BaseModel):
    """The matrix to evaluate; the CLI flags and an experiment YAML file both build one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[str] = Field(min_length=1)
    prompts: list[str] | None = Field(default=None, description="variant names; default: each task's own list")
    shots: list[int] = Field(default=[0], min_length=1)
    selectors: list[str] = Field(default=["first_k"], min_length=1)
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()], min_length=1)
    limit: int | None = Field(default=None, ge=1, description="evaluate only the first N items of each task")
    sample: int | None = Field(default=None, ge=1, description="evaluate a seeded random sample of N items of each task "
                               "(seed: 'seed'; items ranked by a hash of seed and item id, see harness/subsets.py)")
    stratify: str | None = Field(default=None, min_length=1, description="with limit or sample: allocate the N items "
                                 "proportionally over the values of this expression over the row, e.g. 'label'")
    max_tokens: int | None = Field(default=None, ge=1, description="cap on each generate task's generation.max_tokens")
    seed: int = 1234
    split: str = "test"
    fewshot_split: str = "fewshot"
    tasks_dirs: list[str] = Field(default_factory=list)
    prompts_dirs: list[str] = Field(default_factory=list)
    data_dirs: list[str] = Field(default_factory=list)
    chunk_items: int = Field(default=64, ge=1, description="items per backend call and per transaction")
    draws: int = Field(default=1, ge=1, le=100, description="independent demonstration draws per few-shot cell (harness draws reports mean/spread/CI)")

    @field_validator("models", mode="before")
    @classmethod
    def _model_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_model(v) if isinstance(v, str) or v is None else v for v in value]
        return value

    @field_validator("shots")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(k < 0 for k in value):
            raise ValueError("shot counts must be >= 0")
        return sorted(set(value))

    @field_validator("selectors")
    @classmethod
    def _known_selectors(cls, value: list[str]) -> list[str]:
        for name in value:
            SELECTORS.get(name, "selectors")
        return value

    @model_validator(mode="after")
    def _one_subset_size(self) -> ExperimentSpec:
        if self.sample is not None and self.limit is not None:
            raise ValueError("give --sample or --limit, not both ('limit': the first N items; 'sample': a seeded random N)")
        if self.stratify is not None and self.sample is None and self.limit is None:
            raise ValueError("'stratify' (--stratify) needs 'sample' or 'limit': the number of items to spread over the strata")
        return self

    def subset_key(self) -> tuple[Any, ...] | None:
        """What a sampled or stratified subset adds to each cell's id (None: the first N or all items, ids as before)."""
        if self.sample is None and self.stratify is None:
            return None
        return ("sample", self.sample, self.stratify) if self.sample is not None else ("limit", self.limit, self.stratify)


@dataclass(frozen=True)
class Cell:
    task: Task
    template: PromptTemplate
    shots: int
    selector: str  # "none" for zero-shot, where selectors make no difference
    model: ModelSpec
    seed: int
    items: tuple[Item, ...]
    pool: tuple[Item, ...]
    max_tokens: int | None = None  # experiment-level cap on generation.max_tokens
    draw: int = 0  # demonstration draw (--draws): mixed into each item's few-shot RNG seed
    subset: tuple[Any, ...] | None = None  # ExperimentSpec.subset_key(): a sampled/stratified subset is a cell of its own

    @property
    def cell_id(self) -> str:
        key = [self.task.name, self.template.name, self.template.sha256, self.shots, self.selector, self.model.label, self.seed]
        if self.max_tokens and self.task.spec.type == "generate":  # only capped cells get a different id
            key.append(self.max_tokens)
        if self.draw:  # draw 0 keeps the id it had before draws existed
            key.append(["draw", self.draw])
        if self.subset is not None:  # --sample / --stratify; the first N items (--limit) keep the id they always had
            key.append(["subset", *self.subset])
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]

    @property
    def selector_label(self) -> str:
        """The selector as stored and shown: ``random draw 2`` for draws after the first."""
        return f"{self.selector} draw {self.draw}" if self.draw else self.selector

    @property
    def label(self) -> str:
        return f"{self.task.name} | {self.template.name} | {self.shots}-shot {self.selector_label} | {self.model.label}"


@dataclass(frozen=True)
class Prepared:
    """One item ready for the backend: its rendering, demonstrations and requests."""

    position: int
    item: Item
    rendered: Rendered
    demo_ids: tuple[str, ...]
    requests: tuple[Request, ...]


@dataclass
class RunSummary:
    run_id: str
    resumed: bool
    cells: list[Cell]
    items_written: int = 0
    requests: int = 0
    cache_hits: int = 0
    backend_requests: int = 0
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cache_origins: Counter[str | None] = field(default_factory=Counter)  # cache hits by the run that stored them

    def cache_line(self) -> str | None:
        """'N of M requests served from the response cache (first stored by run X)', or None without hits."""
        if not self.cache_hits:
            return None
        runs = [("this run" if run == self.run_id else run) for run, _ in self.cache_origins.most_common() if run is not None]
        named = f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(runs[:3])}" + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        if None in self.cache_origins:
            named = f"{named} and earlier runs" if runs else "runs stored before run ids were recorded"
        unique = self.cache_hits + self.backend_requests  # identical requests are looked up once
        return f"{self.cache_hits} of {unique} requests served from the response cache (first stored by {named})"


# -- planning -----------------------------------------------------------------------
def plan(spec: ExperimentSpec) -> list[Cell]:
    """Expand the matrix and check every cell renders, before any model is loaded."""
    task_dirs = [Path(d) for d in spec.tasks_dirs]
    data_dirs = [Path(d) for d in spec.data_dirs]
    prompt_dirs = [Path(d) for d in spec.prompts_dirs]
    cells: list[Cell] = []
    # a group task (e.g. mmlu) expands into its members (mmlu_anatomy, ...), one set of cells each
    tasks = [member for ref in spec.tasks for member in find_task(ref, task_dirs, data_dirs).members()]
    for task in tasks:
        for step in task.spec.filters:
            build_filter(step)
        items = tuple(select_items(task, task.items(spec.split), limit=spec.limit, sample=spec.sample, stratify=spec.stratify,
                                   seed=spec.seed))
        if not items:
            raise HarnessError(f"task '{task.name}': split '{spec.split}' has no rows")
        templates = [load_prompt(task, name, prompt_dirs) for name in (spec.prompts or task.spec.prompts)]
        needs_pool = any(k > 0 for k in spec.shots)
        pool = tuple(task.items(spec.fewshot_split)) if needs_pool else ()
        for model in spec.models:
            for template in templates:
                for shots in spec.shots:
                    for selector in spec.selectors if shots > 0 else ["none"]:
                        for draw in range(spec.draws if shots > 0 else 1):
                            cell = Cell(task, template, shots, selector, model, spec.seed, items, pool, spec.max_tokens, draw,
                                        subset=spec.subset_key())
                            first = prepare(cell, 0, items[0], _selector(cell))  # fail fast on template errors
                            _check_per_choice_contexts(cell, first)
                            cells.append(cell)
                        if shots == 0:
                            break
    return cells


def _check_per_choice_contexts(cell: Cell, first: Prepared) -> None:
    """A model that cannot score choices with their own contexts (e.g. the API's generate-and-parse
    fallback, which shows one context) is refused here, at planning, before anything runs."""
    if first.rendered.prompts:
        problem = backend_class(cell.model).per_choice_contexts_problem(cell.model, first.rendered.prompt)
        if problem:
            raise HarnessError(f"task '{cell.task.name}' has per-choice contexts ('contexts:' in {cell.task.yaml_path}), but {problem}")


def _selector(cell: Cell) -> Selector | None:
    return SELECTORS.get(cell.selector)(cell.pool) if cell.shots > 0 else None


UNCONDITIONAL_METRIC = "acc_mutual_info"  # a task listing it gets one extra request per continuation, see ``prepare``


def prepare(cell: Cell, position: int, item: Item, selector: Selector | None) -> Prepared:
    shots = selector.select(item, cell.shots, draw_rng(cell.seed, item.id, cell.draw)) if selector else []
    rendered = cell.template.render(cell.task, item, shots)
    requests: tuple[Request, ...]
    if cell.task.spec.type in ("multiple_choice", "classification"):
        requests = rendered.loglikelihood_requests()  # per-choice contexts: each continuation after its own prompt
        if UNCONDITIONAL_METRIC in cell.task.spec.metrics:
            # lm-eval's acc_mutual_info: each continuation again after an empty context, ("", " Paris"), after the
            # conditional requests in the same order; cached and stored with the item like them (scorer.split_unconditional)
            requests += tuple(LoglikelihoodRequest(context="", continuation=r.continuation) for r in requests)
    else:
        gen = cell.task.spec.generation
        max_tokens = min(gen.max_tokens, cell.max_tokens) if cell.max_tokens else gen.max_tokens
        requests = tuple(  # one request per sample; ``repeat`` keeps samples apart in the cache
            GenerateRequest(prompt=rendered.prompt, max_tokens=max_tokens, stop=tuple(gen.stop), temperature=gen.temperature,
                            seed=cell.seed, repeat=r)
            for r in range(cell.task.spec.repeats)
        )
    return Prepared(position, item, rendered, tuple(s.id for s in shots), requests)


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
                entry["data"][split] = content_sha256(task.split_path(split))
        entry["templates"][cell.template.name] = cell.template.sha256
        if task.labels:  # classification: corpus metrics (macro-F1, per-class report) map gold indices to labels
            entry["labels"] = list(task.labels)
        if task.group and task.spec.subtasks:  # a member of a group task: compare adds micro/macro rows
            entry["group"] = {"name": task.group, "aggregate": list(task.spec.subtasks.aggregate)}
    models = list(identities) if identities is not None else model_identities(spec)
    # unset sample/stratify are left out, so a run without them keeps the config hash it had before they existed
    unset = {name for name in ("sample", "stratify") if getattr(spec, name) is None}
    config: dict[str, Any] = {"spec": spec.model_dump(mode="json", exclude=unset), "tasks": tasks, "models": models}
    subsets, warnings = _subsets_and_warnings(spec, cells)
    if subsets:
        config["subsets"] = subsets
    if warnings:
        config["warnings"] = warnings
    return config


def _subsets_and_warnings(spec: ExperimentSpec, cells: Sequence[Cell]) -> tuple[dict[str, Any], list[str]]:
    """Per task, the evaluated subset (harness/subsets.py: how, size, label counts, warnings) when it is not the
    whole split or was sampled/stratified; and every warning of the run, one line each: subsets, then few-shot
    pools that are the evaluated split and templates that never show their demonstrations (harness/fewshot.py)."""
    how = describe(spec.limit, spec.sample, spec.stratify, spec.seed)
    subsets: dict[str, Any] = {}
    lines: list[str] = []
    shots_by_template: dict[str, tuple[Any, set[int]]] = {}
    pooled: dict[str, Task] = {}
    for cell in cells:
        task = cell.task
        if how is not None and task.name not in subsets:
            split = task.items(spec.split)
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


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def cache_key(identity_json: str, request: Request) -> str:
    return hashlib.sha256(f"{identity_json}\x00{request.key()}".encode()).hexdigest()


# -- running ------------------------------------------------------------------------
def run_experiment(
    spec: ExperimentSpec,
    store: Store,
    *,
    new: bool = False,
    backends: Mapping[str, Backend] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Evaluate the matrix, resuming an unfinished identical run (same config and model identities) unless ``new``.

    ``backends`` maps model labels to ready backends (tests, notebooks); others are loaded
    from their specs on the first cache miss. ``log`` gets one line when a run is resumed,
    one when requests were served from the response cache, and one ``warning: ...`` per line of
    the config's ``warnings`` (see ``config_snapshot``; the CLI prints them all to stderr).
    """
    cells = plan(spec)
    identities = model_identities(spec, backends)
    config = config_snapshot(spec, cells, identities)
    if log is not None:  # subsets that misrepresent the split, pools that are the split, templates that show no shots
        for line in config.get("warnings", []):
            log(f"warning: {line}")
    config_hash = _hash(config)
    run_id = None if new else store.unfinished_run(config_hash)
    resumed = run_id is not None
    total = sum(len(c.items) for c in cells)
    if run_id is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{_hash([config_hash, os.getpid(), datetime.now().isoformat()])[:6]}"
        store.create_run(run_id, config_hash, config, versions(), spec.seed)
    elif log is not None:
        log(f"resuming run {run_id}: {store.item_count(run_id)} of {total} items already stored (same config and model content)")
    summary = RunSummary(run_id=run_id, resumed=resumed, cells=cells)
    ready = dict(backends or {})
    with progress_bar("evaluating", total, enabled=show_progress) as advance:
        for model, identity in zip(spec.models, identities):
            model_cells = [c for c in cells if c.model == model]
            run_model(model, model_cells, store, run_id, ready, summary, advance, spec.chunk_items, identity)
            if model.label in ready and ready[model.label].stats():
                summary.extra.setdefault("backend_stats", {})[model.label] = ready[model.label].stats()
            if model.label in ready and (backends is None or model.label not in backends):
                ready.pop(model.label).close()
    store.finish_run(run_id)
    summary.run_dir = export_run(store, run_id)
    line = summary.cache_line()
    if log is not None and line:
        log(line)
    return summary


def run_model(
    model: ModelSpec, cells: list[Cell], store: Store, run_id: str, ready: dict[str, Backend], summary: RunSummary, advance: Any,
    chunk_items: int = 64, identity: dict[str, Any] | None = None,
) -> None:
    """Evaluate ``cells`` of one model into ``run_id``: only items not yet stored, through the cache.

    ``run_experiment`` calls it per model; ``harness tune`` calls it on its selection cells with
    the in-training model as a ready backend.
    """
    if identity is None:
        identity = ready[model.label].identity if model.label in ready else backend_class(model).identity_of(model)
    identity_json = json.dumps(identity, sort_keys=True)

    def backend() -> Backend:
        if model.label not in ready:
            ready[model.label] = backend_class(model)(model)
        return ready[model.label]

    for cell in cells:
        store.add_cell(
            CellRecord(
                run_id=run_id, cell_id=cell.cell_id, task=cell.task.name, task_type=cell.task.spec.type,
                prompt=cell.template.name, prompt_sha256=cell.template.sha256, shots=cell.shots, selector=cell.selector_label,
                model=model.label, model_json=identity, metrics=list(cell.task.spec.metrics), n_planned=len(cell.items),
            )
        )
        done = store.done_item_ids(run_id, cell.cell_id)
        advance(len(done))
        todo = [(pos, item) for pos, item in enumerate(cell.items) if item.id not in done]
        selector = _selector(cell)
        filters = [build_filter(step) for step in cell.task.spec.filters]
        for chunk in _chunks(todo, _chunk_size(cell, chunk_items)):
            prepared = [prepare(cell, pos, item, selector) for pos, item in chunk]
            resolved, fresh = _resolve(prepared, identity_json, store, backend, summary)
            records = [_record(cell, p, results, cached, filters) for p, (results, cached) in zip(prepared, resolved)]
            store.write_items(run_id, records, fresh)
            summary.items_written += len(records)
            advance(len(records))


def _chunk_size(cell: Cell, chunk_items: int = 64) -> int:
    # at most chunk_items items, and roughly the same number of requests per chunk whatever the number of choices
    choices = len(cell.items[0].choices or ()) or 1
    return max(1, min(chunk_items, 256 // choices))


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _resolve(
    prepared: list[Prepared], identity_json: str, store: Store, backend: Any, summary: RunSummary
) -> tuple[list[tuple[list[Result], bool]], dict[str, Result]]:
    """Per item: its results (in request order) and whether all came from the cache.

    Looks every request up in the cache and sends only the misses (deduplicated) to the
    backend. Also returns the fresh results, to be written with the items.
    """
    keyed = [[cache_key(identity_json, r) for r in p.requests] for p in prepared]
    wanted: dict[str, Request] = {}
    for p, keys in zip(prepared, keyed):
        for key, request in zip(keys, p.requests):
            wanted.setdefault(key, request)
    summary.requests += sum(len(keys) for keys in keyed)
    results = store.cached(list(wanted), origins=summary.cache_origins)
    missing = [key for key in wanted if key not in results]
    summary.cache_hits += len(wanted) - len(missing)
    fresh: dict[str, Result] = {}
    if missing:
        summary.backend_requests += len(missing)
        requests = [wanted[key] for key in missing]
        if isinstance(requests[0], LoglikelihoodRequest):
            answers: Sequence[Result] = backend().loglikelihood(requests)
        else:
            answers = backend().generate(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"backend returned {len(answers)} results for {len(requests)} requests")
        fresh = dict(zip(missing, answers))
        results.update(fresh)
    return [([results[k] for k in keys], not any(k in fresh for k in keys)) for keys in keyed], fresh


def _record(cell: Cell, p: Prepared, results: list[Result], cached: bool, filters: list[Any]) -> ItemRecord:
    outcome = build_outcome(p.item, p.rendered.continuations, results, filters)
    return ItemRecord(
        cell_id=cell.cell_id,
        item_id=p.item.id,
        position=p.position,
        prompt=prompt_to_json(p.rendered.prompt),
        continuations=list(p.rendered.continuations) if p.item.choices is not None else None,
        demo_ids=list(p.demo_ids),
        target=p.item.stored_target(),  # an index, a list of correct indices (several correct choices), or the references
        response=[result_to_json(r) for r in results],
        extracted=outcome.extracted,
        scores=score_outcome(outcome, cell.task.spec.metrics),
        latency_s=sum(r.latency_s for r in results),
        n_tokens=sum(r.n_tokens for r in results),
        cached=cached,
        cluster=p.item.cluster,
    )


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
