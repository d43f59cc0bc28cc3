"""``harness compare --budget``: the ranking's cells against a budget of money or tokens, and the best cell within it.

A cell's cost is counted from its stored items (the cost ledger, harness/runner/ledger.py): by default over the items the
ranking compares (those every cell of the task has), which is a count, not an estimate; with ``scope="split"`` the cell's mean
cost per stored item times the items of the task's split, which is an extrapolation and said to be one. Money needs the
model's price (the run's ``prices:``) and token counts on every item counted; a cell without them is "unknown", neither within
nor over, and never taken as free. Verdicts are the ranking's own: this module only marks cells and names the best-ranked
cell whose cost is within the budget, with the verdict the ranking gave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.analysis.compare import Comparison
from harness.analysis.ranking import RankedCell, TaskRanking
from harness.core.errors import HarnessError
from harness.runner.ledger import money, run_prices
from harness.store import ItemLedger, Store, StoredCell

Scope = Literal["compared", "split"]
SCOPES: tuple[Scope, ...] = ("compared", "split")


@dataclass(frozen=True)
class BudgetCell:
    """One ranked cell's cost for the budget: ``status`` within | over | unknown (``why`` says what is missing)."""

    ranked: RankedCell
    cost: float | None
    items: int  # the items its cost counts (compared) or is extrapolated to (split)
    status: str
    why: str | None = None


@dataclass(frozen=True)
class BudgetRanking:
    """A task's ranking under the budget: every cell's cost and status, and the best-ranked cell within it (None: none is)."""

    task: str
    unit: str  # money | tokens
    currency: str | None  # money: the price table's currency
    budget: float
    scope: Scope
    estimated: bool  # the costs are extrapolated (scope split) rather than counted
    n_items: int  # the items compared (scope compared; the split's size with scope split)
    cells: list[BudgetCell]

    @property
    def best(self) -> BudgetCell | None:
        """The best-ranked cell within the budget (the ranking's order; its verdict is the ranking's)."""
        return next((c for c in self.cells if c.status == "within"), None)


def _split_size(configs: dict[str, dict[str, Any]], store: Store, cell: StoredCell) -> int:
    """The task's split size as the run recorded it (its subset record's 'of'), else the cell's planned items (the whole split)."""
    if cell.run_id not in configs:
        configs[cell.run_id] = store.run_config(cell.run_id)
    subsets = configs[cell.run_id].get("subsets", {})
    entry = subsets.get(cell.task) if isinstance(subsets, dict) else None
    return int(entry["of"]) if isinstance(entry, dict) and isinstance(entry.get("of"), int) else cell.n_planned


def under_budget(store: Store, comp: Comparison, *, money_budget: float | None = None, token_budget: int | None = None,
                 scope: Scope = "compared") -> list[BudgetRanking]:
    """Each task's ranking against a money or token budget (exactly one), costs counted as ``scope`` says."""
    if (money_budget is None) == (token_budget is None):
        raise HarnessError("give one budget: --budget MONEY or --budget-tokens N")
    if scope not in SCOPES:
        raise HarnessError(f"--budget-scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    budget = float(money_budget if money_budget is not None else token_budget)  # type: ignore[arg-type]
    if not budget >= 0:
        raise HarnessError(f"a budget must be a number >= 0, got {budget:g}")
    items: dict[tuple[str, str], dict[str, ItemLedger]] = {}
    for row in store.item_ledgers(comp.runs):
        items.setdefault((row.run_id, row.cell_id), {})[row.item_id] = row
    prices = run_prices(store, comp.runs)
    currencies = sorted({p.currency for table in prices.values() for p in table.values()})
    if money_budget is not None and not prices:
        raise HarnessError(f"--budget: no compared run has a price table (run {', '.join(comp.runs)}): add 'prices:' to the experiment file "
                           "(per model label: input_per_million, output_per_million) and run it again (answered from the cache), "
                           "or give --budget-tokens N")
    if money_budget is not None and len(currencies) > 1:
        raise HarnessError(f"--budget: the compared runs' prices are in {' and '.join(currencies)}; compare runs priced in one currency")
    out = []
    configs: dict[str, dict[str, Any]] = {}
    for ranking in comp.rankings:
        common = _common_items(ranking)
        rows = []
        for rc in ranking.cells:
            cell = rc.summary.cell
            stored = items.get((cell.run_id, cell.cell_id), {})
            price = prices.get(cell.run_id, {}).get(cell.model)
            counted = [stored[i] for i in common if i in stored] if scope == "compared" else list(stored.values())
            target = len(common) if scope == "compared" else _split_size(configs, store, cell)
            rows.append(_judge(rc, counted, target, price, money_budget is not None, budget, scope))
        out.append(BudgetRanking(ranking.task, "money" if money_budget is not None else "tokens", currencies[0] if currencies else None,
                                 budget, scope, scope == "split", len(common) if scope == "compared" else max((c.items for c in rows), default=0),
                                 rows))
    return out


def _common_items(ranking: TaskRanking) -> list[str]:
    """The items every cell of the task has (what the ranking compares), in a stable order."""
    sets = [set(rc.summary.scores) for rc in ranking.cells]
    return sorted(set.intersection(*sets)) if sets else []


def _judge(rc: RankedCell, counted: Sequence[ItemLedger], target: int, price: Any, in_money: bool, budget: float, scope: Scope) -> BudgetCell:
    if in_money and price is None:
        return BudgetCell(rc, None, target, "unknown", f"no price for model '{rc.summary.cell.model}' in its run's 'prices:'")
    unmetered = sum(1 for i in counted if i.tokens_in is None or i.tokens_out is None)
    if unmetered:
        return BudgetCell(rc, None, target, "unknown", f"{unmetered} of its {len(counted)} items carry no token counts")
    if not counted:
        return BudgetCell(rc, None, target, "unknown", "no stored items to count")
    requests = sum(i.requests for i in counted)
    tokens_in = sum(i.tokens_in or 0 for i in counted)
    tokens_out = sum(i.tokens_out or 0 for i in counted)
    cost = money(price, requests, tokens_in, tokens_out) if in_money else float(tokens_in + tokens_out)
    if scope == "split":
        cost = cost / len(counted) * target  # the mean per stored item, times the split's items: an estimate
    return BudgetCell(rc, cost, target, "within" if cost <= budget else "over")


def budget_dict(b: BudgetRanking) -> dict[str, Any]:
    """A task's budget ranking as ``--json`` shows it."""
    best = b.best
    return {
        "task": b.task, "unit": b.unit, "currency": b.currency, "budget": b.budget, "scope": b.scope, "estimated": b.estimated,
        "n_items": b.n_items, "best_within": None if best is None else best.ranked.summary.cell.cell_id,
        "best_within_label": None if best is None else best.ranked.summary.label,
        "best_within_verdict": None if best is None else best.ranked.verdict.code,
        "cells": [{"run_id": c.ranked.summary.cell.run_id, "cell_id": c.ranked.summary.cell.cell_id, "label": c.ranked.summary.label,
                   "rank": c.ranked.rank, "verdict": c.ranked.verdict.code, "cost": c.cost, "items": c.items, "status": c.status, "why": c.why}
                  for c in b.cells],
    }
