"""``harness sensitivity``: the sensitivity report in the terminal, as JSON, or as one HTML file.

Terminal: one compact table per factor overview, the slices (min [CI] / median / max [CI],
range) and the paired tests. HTML: one section per factor with a range chart (inline SVG
drawn with html_report's axis helpers: per slice a bar from the lowest to the highest
setting mean, each setting's mean as a dot with its CI) and the same tables.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.text import Text

from harness.analysis.sensitivity import DESCRIPTIONS, FACTORS, PairedTest, Sensitivity, Slice
from harness.core.files import write_atomic
from harness.report.html import CSS
from harness.report.numbers import p_value, percent
from harness.report.svg import LABEL_W, PAD, PLOT_W, ROW_H, axis, bounds, escape, figure, short_label
from harness.report.terminal import Col, aliased, console, legend_text, path_aliases, print_table
from harness.stats.basics import Interval

RANGE_COLOUR, LEVEL_COLOUR, EXTREME_COLOUR = "#9ecae1", "#2166ac", "#b2182b"


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


# -- HTML -----------------------------------------------------------------------------------
def range_chart(factor: str, slices: list[Slice]) -> str:
    """Per slice: a bar from the lowest to the highest setting mean; each setting a dot with its CI."""
    height = len(slices) * ROW_H
    low, high = bounds([v for s in slices for lv in s.levels for v in (lv.interval.low, lv.interval.high)])
    grid, x = axis(low, high, LABEL_W, PLOT_W, PAD, height)
    rows = []
    for i, s in enumerate(slices):
        y = PAD + i * ROW_H + ROW_H / 2
        marks = []
        for lv in s.levels:
            colour = EXTREME_COLOUR if lv is s.min or lv is s.max else LEVEL_COLOUR
            method = f" ({escape(lv.interval.method)})" if _has_ci(lv.interval) else ""  # else _ci already names why there is none
            if _has_ci(lv.interval):
                marks.append(f'<line x1="{x(lv.interval.low):.1f}" y1="{y + 4}" x2="{x(lv.interval.high):.1f}" y2="{y + 4}" '
                             f'stroke="{colour}" stroke-width="1" opacity="0.6"/>')
            marks.append(f'<circle class="level" cx="{x(lv.mean):.1f}" cy="{y}" r="4" fill="{colour}"><title>{escape(lv.name)}: '
                         f'{escape(ci_text(lv.interval))}{method}</title></circle>')
        tip = f"{s.context}: {s.min.name} {percent(s.min.mean)} … {s.max.name} {percent(s.max.mean)} (range {percent(s.range)})"
        rows.append(f'<g class="slice"><title>{escape(tip)}</title>'
                    f'<text x="{LABEL_W - 8}" y="{y + 4}" class="label">{escape(short_label(s.context))}</text>'
                    f'<rect x="{x(s.min.mean):.1f}" y="{y - 6}" width="{max(x(s.max.mean) - x(s.min.mean), 1):.1f}" height="12" '
                    f'fill="{RANGE_COLOUR}"/>{"".join(marks)}</g>')
    return figure(f"range-chart factor-{factor}", f"{factor}: range of setting means per slice", height, grid + "".join(rows),
                f"{slices[0].metric} (%) — bar: min to max of setting means; dots: settings with their CIs (hover for method)")


def _table(css: str, head: list[str], rows: list[list[str]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<table class='plain {css}'><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>")


def render(result: Sensitivity, title: str = "harness sensitivity report") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{escape(title)}</h1><p class='note'>runs: {escape(', '.join(result.runs))} · generated {stamp} · "
            f"{result.confidence:.0%} CIs: Wilson per one-draw setting, t over draws for settings pooled over draws.</p>"]
    overview = [[f.factor, DESCRIPTIONS[f.factor], str(f.slices), percent(f.median_range), percent(f.largest.range), f.largest.context]
                for f in result.factors()]
    body.append("<h2>Overview</h2>" + _table("overview", ["factor", "what varies", "slices", "median range", "largest range", "where"], overview))
    for factor in FACTORS:
        slices = [s for s in result.slices if s.factor == factor]
        if not slices:
            continue
        body.append(f"<section class='factor' id='factor-{factor}'><h2>{escape(factor)} — {escape(DESCRIPTIONS[factor])}</h2>")
        body.append(range_chart(factor, slices))
        body.append(_table("slices", SLICE_HEAD, [slice_row(s) for s in slices]))
        tests = [t for t in result.tests if t.factor == factor]
        if tests:
            body.append(f"<h3>Paired tests on the same items (Holm over the {len(tests)} tests)</h3>")
            body.append(_table("paired", TEST_HEAD, [test_row(t) for t in tests]))
        body.append("</section>")
    if result.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li class='warn'>{escape(n)}</li>" for n in result.notes) + "</ul>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_html(result: Sensitivity, path: Path) -> Path:
    write_atomic(path, [render(result)])
    os.chmod(path, 0o644)
    return path
