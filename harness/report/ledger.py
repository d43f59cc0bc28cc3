"""The cost ledger in the terminal (``harness run``, ``harness show RUN``) and ``compare --budget``'s marks."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from harness.analysis.budget import BudgetRanking
from harness.analysis.compare import Comparison
from harness.report.terminal import Col, print_table, verdict_text
from harness.runner.ledger import CellCost


def money_text(value: float | None, currency: str | None = None) -> str:
    """Money to four significant places (costs per cell are often fractions of a cent), '—' when unknown."""
    if value is None:
        return "—"
    text = f"{value:,.2f}" if value >= 100 else f"{value:.4g}" if value > 0 else "0"
    return f"{text} {currency}" if currency else text


def count_text(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def ledger_rows(costs: Sequence[CellCost]) -> list[list[str]]:
    """One row per cell: task, cell, items, requests, sent, from cache, tokens in, tokens out, money, money sent."""
    rows = []
    for c in costs:
        lg, recorded = c.ledger, c.ledger.unrecorded == 0
        cell = c.cell
        setting = f"{cell.shots}-shot" if cell.shots == 0 else f"{cell.shots}-shot {cell.selector}"
        rows.append([
            cell.task, f"{cell.prompt} · {setting} · {cell.model}", count_text(lg.items), count_text(lg.requests),
            count_text(lg.sent if recorded else None), count_text(lg.cached if recorded else None),
            count_text(lg.tokens_in if c.metered else None), count_text(lg.tokens_out if c.metered else None),
            money_text(c.money, c.currency), money_text(c.sent_money, c.currency),
        ])
    return rows


LEDGER_COLUMNS = [Col("task", wrap=True), Col("cell", wrap=True), Col("items", "right"), Col("requests", "right"), Col("sent", "right"),
                  Col("from cache", "right"), Col("tokens in", "right"), Col("tokens out", "right"), Col("money", "right", drop=1),
                  Col("money sent", "right", drop=2)]


def print_ledger(costs: Sequence[CellCost], out: Console) -> None:
    """The ledger table, then a line per reason a number is missing (no price, items without token counts)."""
    if not costs:
        return
    priced = any(c.price is not None for c in costs)
    columns = LEDGER_COLUMNS if priced else LEDGER_COLUMNS[:-2]  # no price table: no money column at all (never a made-up 0)
    rows = [r if priced else r[:-2] for r in ledger_rows(costs)]
    print_table(out, "cost ledger — requests and tokens of every stored item (tokens: as each backend counts them)", columns, rows)
    total_sent = sum(c.ledger.sent for c in costs)
    total = sum(c.ledger.requests for c in costs)
    out.print(Text(f"  {total:,} requests, {total_sent:,} sent to the model, the rest from the response cache "
                   "(or an identical request of the run)", style="dim"))
    if priced:
        spent = [c.sent_money for c in costs if c.sent_money is not None]
        currency = next(c.currency for c in costs if c.price is not None)
        if spent:
            out.print(Text(f"  money sent to the model: {money_text(sum(spent), currency)} over {len(spent)} priced cell(s)", style="dim"))
    for why in dict.fromkeys(f"{c.cell.model}: {c.why}" for c in costs if c.why is not None and (priced or c.price is not None)):
        out.print(Text(f"  no money for {why}", style="dim"))
    unmetered = [c for c in costs if not c.metered]
    if unmetered and not priced:
        out.print(Text(f"  tokens unknown for {len(unmetered)} cell(s): items stored before the ledger, or a server that reports no usage",
                       style="dim"))


def print_budgets(comp: Comparison, budgets: Sequence[BudgetRanking], out: Console) -> None:
    """Per task: the budget, what each cell's cost counts, the cells over it, and the best-ranked cell within it."""
    for b in budgets:
        suffix = " tokens" if b.unit == "tokens" else ""
        what = (f"cost of the {b.n_items:,} items compared, counted from the stored items" if not b.estimated else
                f"estimated cost of the task's whole split: each cell's mean cost per stored item x the split's items ({b.n_items:,})")
        rows = [[str(c.ranked.rank), c.ranked.summary.label, _cost_text(c.cost, b), c.status if c.why is None else f"unknown: {c.why}",
                 verdict_text(comp, c.ranked)] for c in b.cells]
        print_table(out, f"{b.task} — under a budget of {_cost_text(b.budget, b)}{suffix}: {what}",
                    [Col("#", "right"), Col("cell", wrap=True), Col("cost" + (" (est.)" if b.estimated else ""), "right"),
                     Col("budget", wrap=True), Col("verdict", wrap=True, drop=1)], rows)
        best = b.best
        over = [c for c in b.cells if c.status == "over"]
        if best is None:
            out.print(Text(f"  no cell's cost is known to be within the budget ({len(over)} over, "
                           f"{sum(1 for c in b.cells if c.status == 'unknown')} unknown)"))
        else:
            above = [c for c in b.cells if c.ranked.rank < best.ranked.rank]
            line = f"  best within the budget: {best.ranked.summary.label} (rank {best.ranked.rank}, {verdict_text(comp, best.ranked)})"
            if above:
                line += f"; ranked above it: {', '.join(f'{c.ranked.summary.label} ({c.status})' for c in above)}"
            out.print(Text(line))
        out.print(Text("  the verdicts are the ranking's own (on the items compared); the budget only marks cells"
                       + (": costs extrapolated from the items stored, an estimate" if b.estimated else ": costs counted, not estimated"),
                       style="dim"))


def _cost_text(value: float | None, b: BudgetRanking) -> str:
    if value is None:
        return "—"
    return money_text(value, b.currency) if b.unit == "money" else f"{value:,.0f}"
