"""The core loop: an experiment matrix -> cells -> items -> requests -> cache/backend -> store.

Read it top to bottom:
1. ``plan`` expands tasks x prompts x shots x selectors x models into Cells and renders one
   item of each, so a broken template fails before any model is loaded or anything written.
2. ``run_experiment`` claims the unfinished run with the same configuration (resume: an
   interrupted or a failed one; refused while another live process evaluates it) or makes a new
   one, then for each cell evaluates only the items not yet stored, in chunks.
3. Each chunk: render prompts, look every request up in the response cache, send only the
   misses to the backend (loaded on the first miss, so a fully cached run never loads the
   model), score, and write items + new cache entries in one transaction.
4. Finishing is exporting ``items.jsonl`` then marking the run finished; an error on the way
   marks it failed with its reason (Ctrl-C leaves it resumable), and the same command resumes it.

"Same configuration" includes each model's identity (``Backend.identity_of``: its content
fingerprint and the settings that change its outputs), as does every cache key: a model
retrained or an adapter rewritten at the same path is a new run with no cached answers,
while an unchanged one is resumed (``harness ab`` reuses its finished run). Resumes and
cache hits are reported in one line each through ``log``, naming the run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from harness.backends import Backend, ModelSpec, backend_class
from harness.core.errors import HarnessError
from harness.core.progress import progress_bar
from harness.core.redaction import redact_text
from harness.prompts.messages import prompt_to_json
from harness.requests import LoglikelihoodRequest, Request, Result, result_to_json
from harness.runner.planning import Cell, Prepared, plan, prepare, selector_for
from harness.runner.provenance import cache_key, config_snapshot, model_identities, stable_hash, versions
from harness.runner.spec import ExperimentSpec
from harness.scoring import build_filter
from harness.scoring.scorer import build_outcome, score_outcome
from harness.store import ItemRecord, Store, StoredCell, export_run


@dataclass
class CacheCounts:
    """What ``resolve`` tallies: requests, cache hits (by the run that stored them) and backend requests.

    A ``RunSummary`` is one (the runner passes its summary); a second pass over a stored run
    (calibration) passes a bare one.
    """

    requests: int = 0
    cache_hits: int = 0
    backend_requests: int = 0
    cache_origins: Counter[str | None] = field(default_factory=Counter)


class Requesting(Protocol):
    """Anything that carries backend requests (``Prepared``, calibration's content-free renderings)."""

    @property
    def requests(self) -> Sequence[Request]: ...


@dataclass(kw_only=True)
class RunSummary(CacheCounts):
    run_id: str
    resumed: bool
    cells: list[Cell]
    items_written: int = 0
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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


# -- running ------------------------------------------------------------------------
def run_experiment(
    spec: ExperimentSpec,
    store: Store | Callable[[], Store],
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
    ``store`` may be a function that opens it: it is called once the matrix is planned and the models'
    identities are known, so a task, template or model error creates no database file (the CLI passes one).
    """
    cells = plan(spec)
    identities = model_identities(spec, backends)
    config = config_snapshot(spec, cells, identities)
    if log is not None:  # subsets that misrepresent the split, pools that are the split, templates that show no shots
        for line in config.get("warnings", []):
            log(f"warning: {line}")
    config_hash = stable_hash(config)
    # each template's text, for the viewer's provenance; after the hash, which already holds each text's sha256
    config["template_sources"] = {f"{c.task.name}/{c.template.name}": c.template.source for c in cells}
    store = store if isinstance(store, Store) else store()
    total = sum(len(c.items) for c in cells)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    fresh_id = f"{stamp}-{stable_hash([config_hash, os.getpid(), datetime.now().isoformat()])[:6]}"
    claim = store.claim_run(fresh_id, config_hash, config, versions(), spec.seed, new=new)  # refused while another process runs it
    run_id, resumed = claim.run_id, claim.resumed_from is not None
    if resumed and log is not None:
        state = f"failed run {run_id} (it failed: {_bounded(claim.error or '?')})" if claim.resumed_from == "failed" else f"run {run_id}"
        log(f"resuming {state}: {store.item_count(run_id)} of {total} items already stored (same config and model content)")
    summary = RunSummary(run_id=run_id, resumed=resumed, cells=cells)
    ready = dict(backends or {})
    try:
        announce(spec.models)
        with progress_bar("evaluating", total, enabled=show_progress) as advance:
            for model, identity in zip(spec.models, identities):
                model_cells = [c for c in cells if c.model == model]
                run_model(model, model_cells, store, run_id, ready, summary, advance, spec.chunk_items, identity)
                if model.label in ready and ready[model.label].stats():
                    summary.extra.setdefault("backend_stats", {})[model.label] = ready[model.label].stats()
                if model.label in ready and (backends is None or model.label not in backends):
                    ready.pop(model.label).close()
        summary.run_dir = export_run(store, run_id)  # export is part of finishing: a finished run always has its items.jsonl
        store.finish_run(run_id)
    except Exception as exc:  # a backend, template or storage error: the run is failed, with its reason (its items stay valid)
        # backends redact their own messages; anything else may hold a URL's key or a header (core/redaction.py)
        reason = redact_text(str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}", limit=2000)
        _settle(lambda: store.fail_run(run_id, reason))
        raise
    except BaseException:  # Ctrl-C is not a failure: the run stays 'running', resumable by the same command
        _settle(lambda: store.release_run(run_id))
        raise
    finally:
        for label in [label for label in ready if backends is None or label not in backends]:
            _settle(ready.pop(label).close)
    line = summary.cache_line()
    if log is not None and line:
        log(line)
    return summary


def _settle(step: Callable[[], None]) -> None:
    """Run a clean-up step on the way out of a failed run; its own failure (a full disk) must not hide the first error.
    A run left at 'running' by it is resumable anyway: its owner (this process) is about to end."""
    try:
        step()
    except Exception:  # the original error is the one to report
        pass


def _bounded(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def announce(models: Sequence[ModelSpec]) -> None:
    """Tell each backend class the models about to run (``Backend.expect``), so one that can share a
    load between them (a vLLM engine for a base and its adapters) loads it once."""
    for name in dict.fromkeys(m.backend for m in models):
        backend_class(next(m for m in models if m.backend == name)).expect(models)


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
            StoredCell(
                run_id=run_id, cell_id=cell.cell_id, task=cell.task.name, task_type=cell.task.spec.type,
                prompt=cell.template.name, prompt_sha256=cell.template.sha256, shots=cell.shots, selector=cell.selector_label,
                model=model.label, model_json=identity, metrics=list(cell.task.spec.metrics), n_planned=len(cell.items),
            )
        )
        done = store.done_item_ids(run_id, cell.cell_id)
        advance(len(done))
        todo = [(pos, item) for pos, item in enumerate(cell.items) if item.id not in done]
        selector = selector_for(cell)
        filters = [build_filter(step) for step in cell.task.spec.filters]
        for chunk in _chunks(todo, _chunk_size(cell, chunk_items)):
            prepared = [prepare(cell, pos, item, selector) for pos, item in chunk]
            resolved, fresh = resolve(prepared, identity_json, store, backend, summary)
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


def resolve(
    prepared: Sequence[Requesting], identity_json: str, store: Store, backend: Any, summary: CacheCounts
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


