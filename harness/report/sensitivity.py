"""``harness sensitivity`` in the terminal: one compact table per factor overview, the slices
(min [CI] / median / max [CI], range) and the paired tests. The row functions here are also the
rows of the sensitivity page of ``harness view`` and of its file export (``-o``, harness/view/export.py),
whose range plot is ``harness.report.plots.factor_plot``.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from harness.analysis.sensitivity import DESCRIPTIONS, FACTORS, PairedTest, Sensitivity, Slice
from harness.report.numbers import p_value, percent
from harness.report.terminal import Col, aliased, console, legend_text, path_aliases, print_table
from harness.stats.basics import Interval


def ci_text(i: Interval) -> str:
    if i.low != i.low or i.high != i.high:  # no interval (one draw: no spread over draws): say why, no "[—, —]"
        return f"{percent(i.mean)} [—] ({i.method})"
    return f"{percent(i.mean)} [{percent(i.low)}, {percent(i.high)}]"


def _has_ci(i: Interval) -> bool:
    return i.low == i.low and i.high == i.high


def test_row(t: PairedTest) -> list[str]:
    r = t.result
    diff = f"{100 * r.diff.mean:+.1f} [{100 * r.diff.low:+.1f}, {100 * r.diff.high:+.1f}]"
    return [t.context, f"{t.a} − {t.b}", str(r.n), diff, r.test, p_value(r.p_value), p_value(t.p_holm), f"{r.wins}/{r.ties}/{r.losses}"]


TEST_HEAD = ["setting", "A − B", "n", "Δ (points) [CI]", "test", "p", "p (Holm)", "W/T/L"]
SLICE_HEAD = ["setting (all else fixed)", "levels", "min [CI]", "median", "max [CI]", "max − min"]


def slice_row(s: Slice) -> list[str]:
    extra = f" · over draws {ci_text(s.over_draws)}" if s.over_draws is not None else ""
    return [s.context + extra, str(len(s.levels)), f"{s.min.name}: {ci_text(s.min.interval)}", percent(s.median),
            f"{s.max.name}: {ci_text(s.max.interval)}", percent(s.range)]


# -- terminal -------------------------------------------------------------------------------
def print_tables(result: Sensitivity, out: Console | None = None) -> None:
    """The overview, then per factor its slices and paired tests; every table fits the console (numbers whole)."""
    out = out or console()
    models = path_aliases([f.largest.context for f in result.factors()] + [s.context for s in result.slices]
                          + [text for t in result.tests for text in (t.context, t.a, t.b)])
    if models:
        out.print(Text(legend_text("models", models)))
    columns = [Col("factor", wrap=True), Col("what varies", wrap=True, drop=1), Col("slices", "right"), Col("median range", "right"),
               Col("largest range", "right"), Col("where", wrap=True)]
    rows = [[f.factor, DESCRIPTIONS[f.factor], str(f.slices), percent(f.median_range), percent(f.largest.range), aliased(f.largest.context, models)]
            for f in result.factors()]
    print_table(out, f"sensitivity · runs {', '.join(result.runs)} · metric points, {result.confidence:.0%} CIs", columns, rows)
    for factor in FACTORS:
        slices = [s for s in result.slices if s.factor == factor]
        if not slices:
            continue
        columns = [Col("setting (all else fixed)", wrap=True), Col("levels", "right", drop=3), Col("lowest", wrap=True, drop=2),
                   Col("min [CI]", "right"), Col("median", "right", drop=1), Col("highest", wrap=True, drop=2), Col("max [CI]", "right"),
                   Col("max − min", "right")]
        rows = [[aliased(s.context, models) + (f" · over draws {ci_text(s.over_draws)}" if s.over_draws is not None else ""), str(len(s.levels)),
                 aliased(s.min.name, models), ci_text(s.min.interval), percent(s.median), aliased(s.max.name, models), ci_text(s.max.interval),
                 percent(s.range)] for s in slices]
        print_table(out, f"{factor} — {DESCRIPTIONS[factor]}", columns, rows)
        tests = [t for t in result.tests if t.factor == factor]
        if tests:
            columns = [Col("setting", wrap=True), Col("A − B", wrap=True), Col("n", "right", drop=3), Col("Δ (points) [CI]", "right"),
                       Col("test", wrap=True, drop=2), Col("p", "right", drop=4), Col("p (Holm)", "right"), Col("W/T/L", "right", drop=1)]
            rows = [[aliased(cell, models) for cell in test_row(t)] for t in tests]
            print_table(out, f"{factor}: paired tests on the same items (Holm over the {len(tests)} tests)", columns, rows)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
