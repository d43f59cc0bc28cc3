"""An A/B report in the terminal, and the rows and notes the HTML report shares with it (same digits, same signs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.analysis.ab import ABReport, ABTask
from harness.analysis.degenerate import degenerate_cells
from harness.report.numbers import p_value
from harness.report.terminal import Col, console, print_table
from harness.store.store import Store
from harness.tune.overlap import OverlapReport


def with_checks(report: ABReport, store: Store, overlap: OverlapReport | None = None) -> ABReport:
    """The A/B report with its loud flags: overlap with the tuned model's training/selection items, degenerate cells
    (``harness ab``, ``harness report --ab`` and the viewer's A/B page print the same)."""
    flags = overlap.flag_lines() if overlap is not None else []
    warnings = overlap.warning_lines() if overlap is not None else []
    notes = overlap.note_lines() if overlap is not None else []
    flags += [d.line for d in degenerate_cells(store, [report.base_run, report.tuned_run])]
    return dataclasses.replace(report, flags=[*report.flags, *flags], warnings=[*report.warnings, *warnings],
                               notes=[*report.notes, *notes])


def print_ab(report: ABReport, out: Any = None) -> None:
    """Per task: each cell, the pooled row (the task's verdict) and the across-prompt row; then the verdict."""
    out = out or console()
    for t in report.tasks:
        fmt = AbFormat(t.percent)
        columns = [Col("cells", wrap=True), Col("n", "right"), Col("base", "right"), Col("tuned", "right"), Col("Δ", "right"),
                   Col(f"{report.confidence:.0%} CI", "right", drop=1), Col("p", "right"), Col("verdict", wrap=True)]
        rows, styles = [], []
        for row in ab_rows(t, report):
            delta, _, interval = row[4].partition(" ")
            rows.append([*row[:4], delta, interval, row[5], row[6]])
            styles.append("bold" if row[7] else None)
        print_table(out, f"{t.task} — {t.metric} {'↑' if t.higher_is_better else '↓'} · Δ = tuned − base", columns, rows, styles)
        for line in ab_notes(t, report, fmt):
            out.print(line, highlight=False)
    for flag in report.flags:
        out.print(f"[bold red]flag:[/] {flag}", highlight=False)
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"[bold]verdict:[/] {report.verdict}", highlight=False)
    out.print(f"runs: base {report.base_run}, tuned {report.tuned_run}. Items where they disagree:", highlight=False)


@dataclass(frozen=True)
class AbFormat:
    """Number formatting shared by the terminal and the HTML report, so both print the same digits."""

    percent: bool

    def score(self, v: float) -> str:
        return "—" if v != v else (f"{100 * v:.1f}" if self.percent else f"{v:.3g}")

    def signed(self, v: float) -> str:
        return "—" if v != v else (f"{100 * v:+.1f}" if self.percent else f"{v:+.3g}")

    def interval(self, mean: float, low: float, high: float) -> str:
        return f"{self.signed(mean)} [{self.signed(low)},{self.signed(high)}]"


def p_text(v: float | None) -> str:
    return p_value(v, missing="")


def ab_rows(t: ABTask, report: ABReport) -> list[tuple[str, str, str, str, str, str, str, bool]]:
    """The table rows of one task (cells, pooled, across prompts): the terminal and HTML both use these."""
    fmt = AbFormat(t.percent)
    rows = []
    if len(t.cells) > 1:
        for c in t.cells:
            r = c.result
            rows.append((c.name, str(r.n), fmt.score(r.mean_b), fmt.score(r.mean_a), fmt.interval(r.diff.mean, r.diff.low, r.diff.high),
                         p_text(r.p_value), c.verdict.text + " (this cell)", False))
    r = t.pooled
    name = f"all {len(t.cells)} cells" if len(t.cells) > 1 else t.cells[0].name
    p_label = p_text(t.p_holm) + (" (Holm)" if len(report.tasks) > 1 else "")
    n_text = str(r.difference.units if len(t.cells) > 1 else r.n)
    rows.append((name, n_text, fmt.score(r.mean_b), fmt.score(r.mean_a), fmt.interval(r.diff.mean, r.diff.low, r.diff.high),
                 p_label, t.verdict.text, True))
    if t.across is not None:
        a = t.across
        rows.append((f"across {len(a.variants)} prompts", str(a.items), "", "", fmt.interval(a.mean, a.low, a.high), p_text(a.p_value),
                     "(prompt variance counted)", False))
    return rows


def ab_notes(t: ABTask, report: ABReport, fmt: AbFormat) -> list[str]:
    lines = [f"  {t.task}: {t.verdict.text}: {t.verdict.detail}" if t.verdict.detail else f"  {t.task}: {t.verdict.text}",
             f"  all cells: {t.unit}; test: {t.pooled.test}"]
    if t.across is not None:
        a = t.across
        tau = "" if a.tau != a.tau else f"; Kendall τ of the variants' order, base vs tuned: {a.tau:+.2f}" + (
            "" if a.tau_low != a.tau_low else f" [{a.tau_low:+.2f},{a.tau_high:+.2f}]")
        lines.append(f"  across prompts: worst variant {a.worst.name} {fmt.signed(a.worst.diff)}, best {a.best.name} "
                     f"{fmt.signed(a.best.diff)} (sd {fmt.score(a.prompt_sd)}), df {a.df:.1f}{tau}")
        if len(a.variants) < 5:
            lines.append(f"  (only {len(a.variants)} prompt variants: the across-prompt interval is wide by design)")
    return lines
