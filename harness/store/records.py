"""What the store hands out and takes in: frozen records, their JSON columns decoded once.

Readers (analysis, rescore, calibration, reports, the API) see these, never ``sqlite3.Row``s
or ``*_json`` columns, so the schema can change in ``store/`` alone. Decoded JSON values stay
the lists and dicts ``json.loads`` gives (the exported rows are those values, byte for byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.requests import Result, result_from_json

StoredPrompt = str | list[dict[str, str]]  # plain text, or chat messages ({"role", "content"}), as prompt_to_json writes them
StoredTarget = int | list[Any]  # a choice index, a list of correct indices, or the references (Item.stored_target)


@dataclass(frozen=True)
class StoredRun:
    """One row of ``runs``: the run's identity and its configuration snapshot."""

    id: str
    created_at: str
    finished_at: str | None
    status: str  # running | failed | finished
    config_hash: str
    config: dict[str, Any]
    versions: dict[str, Any]
    seed: int
    error: str | None = None  # why a failed run failed (None otherwise)
    owner: dict[str, Any] | None = None  # the process evaluating a running run: pid, host, start (None: none, or it ended)


@dataclass(frozen=True)
class RunClaim:
    """What ``Store.claim_run`` hands the runner: the run to write into and what it was before."""

    run_id: str
    resumed_from: str | None  # None: a new run; else the status it had ('running': interrupted, 'failed')
    error: str | None = None  # a failed run's reason, when one is resumed


@dataclass(frozen=True)
class StoredCell:
    """One cell of a run (task x prompt x shots x selector x model); written by the runner, read by everyone."""

    run_id: str
    cell_id: str
    task: str
    task_type: str
    prompt: str
    prompt_sha256: str
    shots: int
    selector: str
    model: str
    model_json: dict[str, Any]  # backend identity + description, no secrets
    metrics: list[str]  # metric names, main metric first
    n_planned: int


@dataclass(frozen=True)
class ItemRecord:
    """An evaluated item as the runner writes it (``Store.write_items`` adds the run id)."""

    cell_id: str
    item_id: str
    position: int
    prompt: Any
    continuations: list[str] | None
    demo_ids: list[str]
    target: Any
    response: list[dict[str, Any]]
    extracted: str | None
    scores: dict[str, float]
    latency_s: float
    n_tokens: int
    cached: bool
    cluster: str | None = None  # the task's 'cluster:' value for this item (None when the task declares none)
    # the cost ledger (harness/runner/ledger.py): of len(response) requests, how many were sent to the model (the rest came from the
    # response cache, or from an identical request of the same run); tokens read and written by all of them and by those sent
    # (None: some result carries no token counts, see harness/requests.py ``metered``)
    requests_sent: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    sent_tokens_in: int | None = None
    sent_tokens_out: int | None = None


@dataclass(frozen=True)
class StoredItem:
    """One row of ``items``, every column decoded."""

    run_id: str
    cell_id: str
    item_id: str
    position: int  # order in the evaluated split
    prompt: StoredPrompt
    continuations: list[str] | None  # the scored choices (None: a generation task)
    demo_ids: list[str]
    target: StoredTarget
    response: list[dict[str, Any]]  # raw backend results (result_to_json), in request order
    extracted: str | None
    scores: dict[str, float]
    latency_s: float
    n_tokens: int
    cached: bool
    cluster: str | None  # None: the task declares no 'cluster:' (or the item was stored before clusters)

    def results(self) -> list[Result]:
        """The stored backend results as Result objects (rescoring and calibration rebuild outcomes from them)."""
        return [result_from_json(r) for r in self.response]


@dataclass(frozen=True)
class ItemScores:
    """An item's scores and cluster alone: what summaries and tallies read, without decoding prompts and responses."""

    run_id: str
    cell_id: str
    item_id: str
    scores: dict[str, float]
    cluster: str | None


@dataclass(frozen=True)
class ItemAnswer:
    """What an item answered, alone: its choices' log-probs (each stored result's ``logprob``, NaN where it has none) and
    the extracted answer, without decoding prompts, targets and scores (the degenerate-cell check reads every item)."""

    run_id: str
    cell_id: str
    item_id: str
    continuations: tuple[str, ...] | None
    logprobs: tuple[float, ...]
    extracted: str | None


@dataclass(frozen=True)
class CalibrationRow:
    """One row of ``calibration`` (contextual calibration of one item, ``harness calibrate``)."""

    run_id: str
    cell_id: str
    item_id: str
    content_free: list[list[float]]  # each content-free input's choice log-probabilities
    p_cf: list[float] | None  # the averaged content-free distribution; None when no input was scorable
    predicted: int  # the uncalibrated choice (NO_CHOICE when unscorable)
    calibrated: int
    target: int


@dataclass(frozen=True)
class StoredDigest:
    """Something computed from a run's rows and kept with it (harness/view/digest.py: what the viewer shows of a big run).

    ``revision``: the run's revision it was computed at (every write to the run's items, cells or calibration rows
    raises it, migration 007); ``producer``: the code that computed it. ``Store.digest`` hands out only a digest
    whose revision is the run's current one, so a digest never outlives the data it summarises."""

    run_id: str
    kind: str
    key: str
    revision: int
    producer: str
    created_at: str
    body: bytes


@dataclass(frozen=True)
class ItemCost:
    """An item's scores with what it cost: its requests (stored results) and tokens (the race replays its budget from them)."""

    item_id: str
    scores: dict[str, float]
    requests: int
    n_tokens: int


@dataclass(frozen=True)
class RaceCell:
    """Where one cell of a race stands (``harness.stats.racing.CellOutcome`` as stored): ``round`` and ``items`` say when it
    stopped (its latest for a survivor); ``difference`` is the confidence sequence of ``beaten_by`` − this cell then."""

    cell_id: str
    status: str  # racing | eliminated | winner | equivalent | undecided
    round: int
    items: int
    mean: float  # its mean race score over those items (NaN: none)
    beaten_by: str | None = None  # the cell id that eliminated it
    difference: tuple[float, float] | None = None
    reason: str = ""


@dataclass(frozen=True)
class StoredRace:
    """One task's race in a ``--until-decided`` run (harness/runner/racing.py), as of its last round."""

    run_id: str
    task: str
    metric: str
    higher_is_better: bool
    bounds: tuple[float, float]  # the metric's known range (the confidence sequences need it)
    worst: float  # the score an unscorable item counted as
    alpha: float
    pair_alpha: float  # each pair's share (Bonferroni over every pair of the starting cells)
    margin: float | None
    round_items: int
    budget: dict[str, int | None]  # items (per cell), requests, tokens (per task); None: no budget
    population: int  # the items the task evaluates (the race's confidence sequences are for their mean)
    seed: int  # of the item order
    reason: str  # racing | winner | equivalent | budget | exhausted
    rounds: int
    evaluations: int  # item scores over all cells
    requests: int  # requests of those items (cache hits included)
    tokens: int
    guarantee: str
    method: str
    cells: tuple[RaceCell, ...]
    updated_at: str = ""

    def cell(self, cell_id: str) -> RaceCell | None:
        return next((c for c in self.cells if c.cell_id == cell_id), None)

    @property
    def decided(self) -> bool:
        """A winner or an equivalence set (a budget or exhausted stop leaves the survivors open)."""
        return self.reason in ("winner", "equivalent")


@dataclass(frozen=True)
class StoredLedger:
    """One cell's cost ledger, summed over its stored items (``Store.ledgers``; priced by harness/runner/ledger.py).

    ``requests`` counts every request of the items, whoever answered; ``sent`` those sent to the model, over the items that
    recorded it (``unrecorded`` items were stored before the ledger: their split between model and cache is unknown).
    Tokens are summed over the ``items - unmetered`` items whose results all carry token counts."""

    run_id: str
    cell_id: str
    items: int
    requests: int
    unrecorded: int
    sent: int
    recorded_requests: int  # the requests of the items that recorded ``sent`` (sent + from the cache)
    unmetered: int
    tokens_in: int
    tokens_out: int
    sent_tokens_in: int
    sent_tokens_out: int

    @property
    def cached(self) -> int:
        """Requests served from the response cache (or by an identical request of the same run), of the recorded items."""
        return self.recorded_requests - self.sent


@dataclass(frozen=True)
class ItemLedger:
    """One item's cost: its requests and tokens (None: not metered); what ``compare --budget`` sums over the items compared."""

    run_id: str
    cell_id: str
    item_id: str
    requests: int
    tokens_in: int | None
    tokens_out: int | None


@dataclass(frozen=True)
class StoredPrices:
    """The price table a run was last evaluated with (the experiment file's ``prices:``, as given: label -> fields)."""

    run_id: str
    prices: dict[str, dict[str, Any]]
    updated_at: str
