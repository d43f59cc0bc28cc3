"""The core loop: an experiment matrix -> cells -> items -> requests -> cache/backend -> store.

Read it top to bottom:
1. ``plan`` expands tasks x prompts x shots x selectors x models into Cells and renders one
   item of each, so a broken template fails before any model is loaded or anything written.
2. ``run_experiment`` claims the unfinished run with the same configuration (resume: an
   interrupted or a failed one; refused while another live process evaluates it) or makes a new
   one, then for each cell evaluates only the items not yet stored, in chunks (with ``race`` set,
   ``--until-decided``: harness/runner/racing.py races each task's cells instead, round by round).
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.backends import Backend, ModelSpec, backend_class
from harness.core.errors import HarnessError
from harness.core.progress import progress_bar
from harness.core.redaction import redact_text
from harness.runner.evaluate import CacheCounts, CellEvaluator, stored_cell
from harness.runner.planning import Cell, plan
from harness.runner.provenance import config_snapshot, model_identities, stable_hash, versions
from harness.runner.racing import check_race, race_tasks
from harness.runner.spec import ExperimentSpec
from harness.store import Store, export_run


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
    if spec.race is not None:
        check_race(spec.race, cells)  # a task that cannot be raced fails here, before a database exists
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
    if spec.prices:  # the cost ledger's prices, beside the run (not in its identity); a resume is priced as last given
        store.write_prices(run_id, {label: price.model_dump(mode="json") for label, price in spec.prices.items()})
    summary = RunSummary(run_id=run_id, resumed=resumed, cells=cells)
    ready = dict(backends or {})
    try:
        announce(spec.models)
        with progress_bar("evaluating", total, enabled=show_progress) as advance:
            if spec.race is not None:  # each task's cells race together, every model's: backends stay loaded until the end
                races, written = race_tasks(spec.race, cells, store, run_id, {m.label: _loader(m, ready) for m in spec.models},
                                            {m.label: i for m, i in zip(spec.models, identities)}, summary, advance, spec.chunk_items,
                                            spec.seed, log)
                summary.items_written += written
                summary.extra["races"] = races
            for model, identity in zip(spec.models, identities):
                if spec.race is None:
                    run_model(model, [c for c in cells if c.model == model], store, run_id, ready, summary, advance, spec.chunk_items, identity)
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

    backend = _loader(model, ready)
    for cell in cells:
        store.add_cell(stored_cell(cell, run_id, identity))
        done = store.done_item_ids(run_id, cell.cell_id)
        advance(len(done))
        todo = [(pos, item) for pos, item in enumerate(cell.items) if item.id not in done]
        records = CellEvaluator(cell, store, run_id, backend, summary, identity_json, advance, chunk_items).evaluate(todo)
        summary.items_written += len(records)


def _loader(model: ModelSpec, ready: dict[str, Backend]) -> Callable[[], Backend]:
    """The model's backend, loaded into ``ready`` on the first call (the first cache miss)."""

    def backend() -> Backend:
        if model.label not in ready:
            ready[model.label] = backend_class(model)(model)
        return ready[model.label]

    return backend
