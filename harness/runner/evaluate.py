"""Evaluating chosen items of one cell: render, look up the response cache, send the misses, score, store.

``run_model`` (harness/runner/execute.py) hands it every item a cell lacks; the race
(harness/runner/racing.py) one round of items at a time. Each chunk of items is written with the
cache entries that produced it in one transaction, so an interruption leaves whole items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.backends import Backend
from harness.prompts.messages import prompt_to_json
from harness.requests import LoglikelihoodRequest, Request, Result, metered, result_to_json
from harness.runner.planning import Cell, Prepared, prepare, selector_for
from harness.runner.provenance import cache_key
from harness.scoring import build_filter
from harness.scoring.scorer import build_outcome, score_outcome
from harness.store import ItemRecord, Store, StoredCell
from harness.tasks.task import Item


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


def stored_cell(cell: Cell, run_id: str, identity: dict[str, Any]) -> StoredCell:
    """The cell as the store records it."""
    return StoredCell(
        run_id=run_id, cell_id=cell.cell_id, task=cell.task.name, task_type=cell.task.spec.type,
        prompt=cell.template.name, prompt_sha256=cell.template.sha256, shots=cell.shots, selector=cell.selector_label,
        model=cell.model.label, model_json=identity, metrics=list(cell.task.spec.metrics), n_planned=len(cell.items),
    )


class CellEvaluator:
    """Evaluates items of one cell into ``run_id`` through the cache; ``backend`` is called on the first miss only."""

    def __init__(self, cell: Cell, store: Store, run_id: str, backend: Callable[[], Backend], counts: CacheCounts, identity_json: str,
                 advance: Callable[[int], Any], chunk_items: int = 64) -> None:
        self.cell, self.store, self.run_id, self.backend, self.counts = cell, store, run_id, backend, counts
        self.identity_json, self.advance, self.chunk_items = identity_json, advance, chunk_items
        self.selector = selector_for(cell)  # once per cell: a kNN selector embeds its pool here
        self.filters = [build_filter(step) for step in cell.task.spec.filters]

    def evaluate(self, todo: Sequence[tuple[int, Item]]) -> list[ItemRecord]:
        """The items (position in the cell's items, item), in chunks; returns what was stored, in ``todo`` order."""
        out: list[ItemRecord] = []
        for chunk in chunks(list(todo), chunk_size(self.cell, self.chunk_items)):
            prepared = [prepare(self.cell, pos, item, self.selector) for pos, item in chunk]
            resolved, fresh = resolve_items(prepared, self.identity_json, self.store, self.backend, self.counts)
            records = [record(self.cell, p, r.results, r.cached, self.filters, r.sent) for p, r in zip(prepared, resolved)]
            self.store.write_items(self.run_id, records, fresh)
            self.advance(len(records))
            out.extend(records)
        return out


def chunk_size(cell: Cell, chunk_items: int = 64) -> int:
    # at most chunk_items items, and roughly the same number of requests per chunk whatever the number of choices
    choices = len(cell.items[0].choices or ()) or 1
    return max(1, min(chunk_items, 256 // choices))


def chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True)
class Resolved:
    """One item's results (in request order), whether all came from the cache, and which of its requests were sent to the model:
    a request sent once for several items (identical requests) counts as sent for the first of them, as answered for the rest."""

    results: list[Result]
    cached: bool
    sent: tuple[bool, ...]


def resolve(
    prepared: Sequence[Requesting], identity_json: str, store: Store, backend: Any, summary: CacheCounts
) -> tuple[list[tuple[list[Result], bool]], dict[str, Result]]:
    """Per item: its results (in request order) and whether all came from the cache (``resolve_items`` without the sent flags)."""
    resolved, fresh = resolve_items(prepared, identity_json, store, backend, summary)
    return [(r.results, r.cached) for r in resolved], fresh


def resolve_items(
    prepared: Sequence[Requesting], identity_json: str, store: Store, backend: Any, summary: CacheCounts
) -> tuple[list[Resolved], dict[str, Result]]:
    """Per item: its results, whether all came from the cache, and which requests were sent (``Resolved``).

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
    first: set[str] = set()  # fresh keys already counted as sent for an earlier item (or request) of this chunk
    out = []
    for keys in keyed:
        sent = []
        for key in keys:
            sent.append(key in fresh and key not in first)
            if key in fresh:
                first.add(key)
        out.append(Resolved([results[k] for k in keys], not any(k in fresh for k in keys), tuple(sent)))
    return out, fresh


def record(cell: Cell, p: Prepared, results: list[Result], cached: bool, filters: list[Any], sent: Sequence[bool] | None = None) -> ItemRecord:
    """The item as stored; ``sent`` (per request: sent to the model) fills its cost ledger (harness/runner/ledger.py)."""
    outcome = build_outcome(p.item, p.rendered.continuations, results, filters)
    costs = ledger_fields(results, sent)
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
        **costs,
    )


def ledger_fields(results: Sequence[Result], sent: Sequence[bool] | None) -> dict[str, int | None]:
    """An item's ledger columns: requests sent (None: not known), tokens in/out of all its results and of those sent (None
    when any result lacks token counts: ``harness.requests.metered``)."""
    tokens = [metered(r) for r in results]
    known = all(t is not None for t in tokens)
    flags = list(sent) if sent is not None else None

    def total(index: int, only_sent: bool) -> int | None:
        if not known or (only_sent and flags is None):
            return None
        return sum(t[index] for t, f in zip(tokens, flags or [True] * len(tokens)) if t is not None and (f or not only_sent))

    return {"requests_sent": None if flags is None else sum(flags), "tokens_in": total(0, False), "tokens_out": total(1, False),
            "sent_tokens_in": total(0, True), "sent_tokens_out": total(1, True)}
