"""The cost ledger: what each cell of a run cost, counted from its stored items, and priced from the experiment's ``prices:``.

Per cell (``Store.ledgers``, summed over the stored items): the requests its items made, how many were sent to the model and
how many were served from the response cache (a request identical to one sent earlier in the same run counts as served), and
the input (prompt) and output (generated) tokens the backends reported (harness/requests.py ``metered``: the HF and vLLM
backends count with the model's tokenizer, an OpenAI-compatible server's ``usage`` is taken as it reports it, the scripted
backend counts words). Tokens are those of every request of the items, whoever answered, so a cell's cost does not depend on
what the cache held; ``sent_*`` are those of the requests sent, what this run paid for.

Money is computed only for a model with a price (``prices:`` in the experiment file, per model label: per million input and
output tokens, per request) and only when every item of the cell is metered; otherwise it is None and said why, never 0.
A local model has no money unless it is priced (``{input_per_million: 0, output_per_million: 0}`` makes it free).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from harness.runner.spec import Price
from harness.store import Store, StoredCell, StoredLedger


@dataclass(frozen=True)
class CellCost:
    """One cell's ledger with its price applied. ``money``: of all its requests; ``sent_money``: of those sent to the model.
    Both None when the cell cannot be priced, with ``why`` saying so."""

    cell: StoredCell
    ledger: StoredLedger
    price: Price | None
    money: float | None
    sent_money: float | None
    why: str | None = None  # why there is no money (None when there is)

    @property
    def currency(self) -> str | None:
        return None if self.price is None else self.price.currency

    @property
    def tokens(self) -> int:
        return self.ledger.tokens_in + self.ledger.tokens_out

    @property
    def metered(self) -> bool:
        return self.ledger.unmetered == 0


def money(price: Price, requests: int, tokens_in: int, tokens_out: int) -> float:
    """What ``requests`` requests reading ``tokens_in`` and writing ``tokens_out`` tokens cost at ``price``."""
    return requests * price.per_request + (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / 1e6


def run_prices(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, Price]]:
    """Each run's price table (run id -> model label -> Price); runs stored without one are absent."""
    out: dict[str, dict[str, Price]] = {}
    for stored in store.prices(run_ids):
        try:
            out[stored.run_id] = {label: Price.model_validate(fields) for label, fields in stored.prices.items()}
        except ValidationError:  # written by another harness version with other fields: the run reads as unpriced
            continue
    return out


def cell_costs(store: Store, run_ids: Sequence[str], cells: Sequence[StoredCell] | None = None) -> list[CellCost]:
    """The ledger of every cell of the runs that has stored items (or of ``cells``), priced, in the store's cell order."""
    ledgers = {(lg.run_id, lg.cell_id): lg for lg in store.ledgers(run_ids)}
    prices = run_prices(store, run_ids)
    out = []
    for cell in cells if cells is not None else store.cells(run_ids):
        ledger = ledgers.get((cell.run_id, cell.cell_id))
        if ledger is not None:
            out.append(priced(cell, ledger, prices.get(cell.run_id, {})))
    return out


def priced(cell: StoredCell, ledger: StoredLedger, prices: Mapping[str, Price]) -> CellCost:
    """The cell's ledger with its model's price applied (None, with the reason, where it cannot be)."""
    price = prices.get(cell.model)
    if price is None:
        return CellCost(cell, ledger, None, None, None, f"no price for model '{cell.model}'")
    if ledger.unmetered:
        return CellCost(cell, ledger, price, None, None, f"{ledger.unmetered} of {ledger.items} items carry no token counts (stored before "
                                                          "the ledger, or a server that reports no usage)")
    total = money(price, ledger.requests, ledger.tokens_in, ledger.tokens_out)
    sent = None if ledger.unrecorded else money(price, ledger.sent, ledger.sent_tokens_in, ledger.sent_tokens_out)
    return CellCost(cell, ledger, price, total, sent)


def cost_dict(cost: CellCost) -> dict[str, Any]:
    """A cell's ledger as ``--json`` shows it (None where a count is not known)."""
    lg = cost.ledger
    recorded = lg.unrecorded == 0
    return {
        "run_id": cost.cell.run_id, "cell_id": cost.cell.cell_id, "task": cost.cell.task, "model": cost.cell.model, "items": lg.items,
        "requests": lg.requests, "sent": lg.sent if recorded else None, "from_cache": lg.cached if recorded else None,
        "unrecorded_items": lg.unrecorded, "tokens_in": lg.tokens_in if cost.metered else None,
        "tokens_out": lg.tokens_out if cost.metered else None, "sent_tokens_in": lg.sent_tokens_in if cost.metered and recorded else None,
        "sent_tokens_out": lg.sent_tokens_out if cost.metered and recorded else None, "unmetered_items": lg.unmetered,
        "money": cost.money, "sent_money": cost.sent_money, "currency": cost.currency, "no_money": cost.why,
    }
