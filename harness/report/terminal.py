"""Terminal output: ranked cells with the possibly-best set and verdicts, prompt spread, rank
stability, item diffs (rich), and plain JSON / CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.analysis.compare import CellSummary, Comparison, ItemDiff, ModelContrast, RankedCell, Stability, TaskRanking
from harness.analysis.summaries import json_safe
from harness.prompts.messages import prompt_from_json, prompt_text
from harness.report.numbers import percent

WIDE = 400  # --wide: every column of every table, nothing wrapped (lines may run past the terminal)
PIPED = 160  # output to a file or a pipe: as wide as a wide terminal
OPTIONAL_TEXT_MIN = 20  # an optional free-text column narrower than this is left out instead
WORD_MAX = 24  # a word longer than this may fold rather than widen its column
TEXT_MIN = 12  # a free-text column is not wrapped narrower than this (or its header's longest word)
HEADER_GAP = 8  # a header at most this much wider than its values gets its width before free text does
LONG_NAME = 24  # model labels longer than this are named M1, M2 ... in tables, with a legend


def console(wide: bool = False) -> Console:
    """The terminal's console; piped, one $COLUMNS wide (160 without it); ``wide``: room for every column."""
    plain = Console()
    if wide:
        return Console(width=max(plain.width, WIDE))
    columns = os.environ.get("COLUMNS", "")
    return plain if plain.is_terminal else Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else PIPED)


@dataclass(frozen=True)
class Col:
    """A column of a fitted table. ``wrap``: free text (names, descriptions) that may take more
    lines; any other column is as wide as its widest value, so a number is never cut or wrapped.
    ``drop``: 0 for a key column; else columns are left out, highest ``drop`` first, until the
    table fits the console (``--wide`` shows them all)."""

    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    drop: int = 0


def _overhead(k: int) -> int:
    """Width a table of ``k`` columns adds to its cells: one space of padding either side of each
    inner column boundary, and the (blank) SIMPLE_HEAD separator."""
    return 3 * max(k - 1, 0)


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int,
                 styles: Sequence[str | None] | None = None) -> tuple[Table, list[str]]:
    """A rich table that fits ``width`` without cutting a value: key columns always, the others
    while they fit; numbers at their full width, free text wrapped (a word longer than its
    column folds onto the next line, never an ellipsis). Returns the table and the headers left out."""
    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    header_word = [max(cell_len(w) for w in c.header.split() or [""]) for c in columns]
    values = [max([0, *(cell_len(r[i]) for r in rows)]) for i in range(len(columns))]
    # a free-text column's longest word (capped): a key column gets it, so a name or a type is not folded
    # mid-word ('arc_challeng|e'); an optional one is left out rather than squeezed under OPTIONAL_TEXT_MIN
    words = [min(natural[i], WORD_MAX, max([0, *(cell_len(w) for r in rows for w in r[i].split())])) for i in range(len(columns))]
    need = [min(natural[i], max(TEXT_MIN, header_word[i], words[i] if c.drop == 0 else OPTIONAL_TEXT_MIN)) if c.wrap else max(values[i], header_word[i])
            for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def total(indices: list[int]) -> int:
        return sum(need[i] for i in indices) + _overhead(len(indices))

    while total(shown) > width:
        optional = [i for i in shown if columns[i].drop > 0]
        if not optional:
            break
        shown.remove(max(optional, key=lambda i: (columns[i].drop, i)))
    widths = {i: need[i] for i in shown}
    spare = width - total(shown)
    cheap = [i for i in shown if not columns[i].wrap and natural[i] - need[i] <= HEADER_GAP]
    free = [i for i in shown if columns[i].wrap]

    def fill(group: list[int], target: Mapping[int, int] | Sequence[int], one_by_one: bool = True) -> None:
        nonlocal spare
        if not one_by_one:
            for i in group:
                grow = min(spare, max(0, target[i] - widths[i]))
                widths[i] += grow
                spare -= grow
            return
        while spare > 0:
            short = [i for i in group if widths[i] < target[i]]
            if not short:
                break
            widest_gap = max(short, key=lambda i: target[i] - widths[i])
            widths[widest_gap] += 1
            spare -= 1

    fill(cheap, natural)  # short headers on one line
    fill(free, words, one_by_one=False)  # whole words, left to right
    fill(free, natural)  # then free text
    fill(shown, natural)  # then the rest
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    for i in shown:
        c = columns[i]
        table.add_column(c.header, justify=c.justify, width=widths[i], overflow="fold")
    for r, row in enumerate(rows):
        table.add_row(*(Text(row[i]) for i in shown), style=styles[r] if styles else None)
    return table, [columns[i].header for i in range(len(columns)) if i not in shown]


def print_table(out: Console, title: str, columns: Sequence[Col], rows: Sequence[Sequence[str]],
                styles: Sequence[str | None] | None = None) -> None:
    """A title (wrapped at words), the fitted table, and which columns this width left out."""
    table, hidden = fitted_table(columns, rows, out.width, styles)
    out.print(Text(title, style="italic"))
    out.print(table)
    if hidden:
        out.print(Text(f"  (not shown at {out.width} columns: {', '.join(hidden)}; --wide shows every column)", style="dim"))


def model_aliases(models: Sequence[str]) -> dict[str, str]:
    """Short names for long model labels (paths), M1, M2 ... in first-seen order; short labels stay."""
    aliases: dict[str, str] = {}
    for model in dict.fromkeys(models):
        if cell_len(model) > LONG_NAME:
            aliases[model] = f"M{len(aliases) + 1}"
    return aliases


def path_aliases(texts: Sequence[str]) -> dict[str, str]:
    """Short names for the long model labels inside free text (words with ':' or '/', longer than
    LONG_NAME), for tables whose settings are strings (sensitivity)."""
    words = [w for text in texts for w in text.split() if cell_len(w) > LONG_NAME and (":" in w or "/" in w)]
    return model_aliases(words)


def legend_text(name: str, aliases: dict[str, str]) -> str:
    return f"{name}: " + "; ".join(f"{short} = {long}" for long, short in aliases.items())


def aliased(text: str, aliases: dict[str, str]) -> str:
    for long, short in sorted(aliases.items(), key=lambda pair: -len(pair[0])):  # a label inside a longer one: the longer first
        text = text.replace(long, short)
    return text


def print_json(value: Any) -> None:
    print(json.dumps(json_safe(value), indent=2, ensure_ascii=False, default=str, allow_nan=False))


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "—" if value != value else f"{100 * value:+.1f}"


METHOD_NAMES = {
    "tango-score": "Tango's score interval and test (½-count continuity correction)",
    "tango-score+deff": "Tango's score interval, counts divided by the design effect of the clusters",
    "bootstrap-t": "studentised bootstrap over items, sign-flip floor",
    "bootstrap-t/clusters": "studentised bootstrap over clusters, sign-flip floor",
    "paired-bca": "paired BCa bootstrap of the corpus statistic",
}


def cell_name(s: CellSummary, varying: set[str], models: dict[str, str] | None = None) -> str:
    """A cell named by what varies across its task's cells (the rest goes in the title); long
    model labels by their short name in ``models``."""
    parts = []
    if "prompt" in varying or not varying:
        parts.append(s.cell.prompt)
    if "shots" in varying:
        parts.append(f"{s.cell.shots}-shot" + ("" if s.cell.selector == "none" else f" {s.cell.selector}"))
    elif "selector" in varying:
        parts.append(s.cell.selector)
    if "model" in varying:
        parts.append((models or {}).get(s.cell.model, s.cell.model))
    if "run" in varying:
        parts.append(f"run {s.cell.run_id}")
    return " · ".join(parts)


def varying_fields(cells: Sequence[CellSummary]) -> set[str]:
    fields: dict[str, set[object]] = {"prompt": {c.cell.prompt for c in cells}, "shots": {c.cell.shots for c in cells},
                                      "selector": {c.cell.selector for c in cells}, "model": {c.cell.model for c in cells}}
    varying = {name for name, values in fields.items() if len(values) > 1}
    names = [(c.cell.prompt, c.cell.shots, c.cell.selector, c.cell.model) for c in cells]
    if len(set(names)) < len(names):
        varying.add("run")
    return varying


def constant_text(cells: Sequence[CellSummary], varying: set[str]) -> str:
    first = cells[0].cell
    parts = []
    if "model" not in varying:
        parts.append(first.model)
    if "shots" not in varying and "selector" not in varying:
        parts.append(f"{first.shots}-shot" + ("" if first.selector == "none" else f" {first.selector}"))
    if "prompt" not in varying and len(cells) > 1:
        parts.append(f"prompt {first.prompt}")
    return ", ".join(parts)


def number_formats(ranking: TaskRanking) -> tuple[Callable[[float], str], Callable[[float], str], str]:
    """Formatters for scores and differences: percentage points for metrics in [0, 1]."""
    if ranking.percent:
        return percent, _signed, " (points)"
    return (lambda v: "—" if v != v else f"{v:.3g}"), (lambda v: "—" if v != v else f"{v:+.3g}"), ""


def comparison_tables(comp: Comparison, out: Console | None = None) -> None:
    """Per task: ranked cells with score CI, Δ vs best with CI, adjusted p and verdict; the
    possibly-best set and what each verdict rests on; then prompt spread and rank stability.
    Every table fits the console (see ``fitted_table``); long model labels get a legend."""
    out = out or console()
    models = model_aliases([rc.summary.cell.model for r in comp.rankings for rc in r.cells])
    if models:
        out.print(Text(legend_text("models", models)))
    runs = {run: str(i) for i, run in enumerate(comp.runs, start=1)}
    for ranking in comp.rankings:
        ranking_table(comp, ranking, models, runs, out)
    spread_tables(comp, models, out)
    for warning in comp.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def ranking_table(comp: Comparison, ranking: TaskRanking, models: dict[str, str], runs: dict[str, str], out: Console) -> None:
    """One task's ranked cells, and the lines saying what the verdicts rest on."""
    summaries = [rc.summary for rc in ranking.cells]
    from_runs = sorted({s.cell.run_id for s in summaries}, key=lambda run: int(runs.get(run, "0")))
    varying = varying_fields(summaries) - ({"run"} if len(from_runs) > 1 else set())
    arrow = "↑" if ranking.higher_is_better else "↓"
    fixed = constant_text(summaries, varying)
    score, signed, unit = number_formats(ranking)
    unfinished = [rc for rc in ranking.cells if rc.summary.missing]
    sizes = {rc.summary.n for rc in ranking.cells}
    same_n = len(sizes) == 1 and not unfinished
    title = f"{ranking.task} — {ranking.metric} {arrow}" + (f" · {fixed}" if fixed else "") + (f" · n={sizes.pop()}" if same_n else "") + (
        " · Δ in points" if unit else "")
    if len(from_runs) > 1:
        title += " · " + legend_text("runs", {run: runs[run] for run in from_runs})
    columns = [Col("#", "right"), Col("cell", wrap=True)] + ([Col("run", "right")] if len(from_runs) > 1 else []) + (
        [] if same_n else [Col("n", "right")]) + [
        Col(ranking.metric, "right"), Col(f"{comp.confidence:.0%} CI", "right", drop=2), Col("Δ vs best", "right"),
        Col("Δ CI", "right", drop=1), Col("p adj", "right"), Col("verdict", wrap=True)]
    rows, styles = [], []
    for rc in ranking.cells:
        s, ci, vs = rc.summary, rc.summary.interval, rc.vs_best
        n = f"{s.n}/{s.cell.n_planned}" if s.missing else str(s.n)
        verdict = verdict_text(comp, rc)
        rows.append([str(rc.rank), cell_name(s, varying, models)] + ([runs.get(s.cell.run_id, s.cell.run_id)] if len(from_runs) > 1 else []) + (
            [] if same_n else [n]) + [
            score(ci.mean), f"[{score(ci.low)},{score(ci.high)}]", "best" if vs is None else signed(vs.diff.mean),
            "" if vs is None else f"[{signed(vs.diff.low)},{signed(vs.diff.high)}]", _p(rc.p_adjusted), verdict])
        styles.append("bold" if rc.may_be_best else None)
    print_table(out, title, columns, rows, styles)
    for line in ranking_notes(comp, ranking, varying, models):
        out.print(line, highlight=False)


def spread_tables(comp: Comparison, models: dict[str, str], out: Console) -> None:
    """Prompt spread, rank stability of the variants, and model against model across variants."""
    spreads = [s for s in comp.spreads if s.n_variants >= 2]
    if spreads:
        columns = [Col("task", wrap=True), Col("model · shots", wrap=True), Col("variants", "right"), Col("min", "right", drop=3),
                   Col("median", "right", drop=4), Col("max", "right", drop=3), Col("max − min", "right"), Col("best prompt", wrap=True, drop=2),
                   Col("worst prompt", wrap=True, drop=1)]
        rows = [[sp.task, aliased(sp.setting, models), str(sp.n_variants), percent(sp.min), percent(sp.median), percent(sp.max), percent(sp.range),
                 sp.best_prompt, sp.worst_prompt] for sp in spreads]
        print_table(out, "prompt sensitivity — spread across prompt variants", columns, rows)
    if comp.stability:
        columns = [Col("task", wrap=True), Col("setting A", wrap=True), Col("setting B", wrap=True), Col("variants", "right", drop=1),
                   Col("τ [CI]", "right")]
        rows = [[st.task, aliased(st.setting_a, models), aliased(st.setting_b, models), str(st.n_variants), tau_text(st)] for st in comp.stability]
        print_table(out, f"rank stability of prompt variants (Kendall τ, {comp.confidence:.0%} CI over items)", columns, rows)
    if comp.models:
        columns = [Col("task", wrap=True), Col("A − B", wrap=True), Col("setting", wrap=True, drop=2), Col("variants", "right", drop=3),
                   Col("Δ [CI]", "right"), Col("p", "right"), Col("worst / best variant", wrap=True, drop=1)]
        rows = [contrast_row(m, models) for m in comp.models]
        print_table(out, f"model vs model across prompt variants (Δ = A − B, {comp.confidence:.0%} CI counts prompt variance)", columns, rows)


def pair_tables(comp: Comparison, out: Console | None = None) -> None:
    """Every pair of a task's cells with its adjusted p-value (the step-down max-T of the ranking)."""
    out = out or console()
    models = model_aliases([rc.summary.cell.model for r in comp.rankings for rc in r.cells])
    for ranking in comp.rankings:
        varying = varying_fields([rc.summary for rc in ranking.cells])
        _, signed, _ = number_formats(ranking)
        rows, styles = [], []
        for i, a in enumerate(ranking.cells):
            for j in range(i + 1, len(ranking.cells)):
                b = ranking.cells[j]
                delta = a.summary.interval.mean - b.summary.interval.mean
                p = float(ranking.p_pairs[i, j])
                rows.append([cell_name(a.summary, varying, models), cell_name(b.summary, varying, models), signed(delta), _p(p)])
                styles.append("bold" if p < ranking.alpha else None)
        columns = [Col("A", wrap=True), Col("B", wrap=True), Col("A − B", "right"), Col("p adj", "right")]
        print_table(out, f"{ranking.task} — every pair, p adjusted over all {len(ranking.pairs())} pairs", columns, rows, styles)


def contrast_row(m: ModelContrast, models: Mapping[str, str] | None = None) -> list[str]:
    """Model against model across prompt variants as the table shows it: task, A − B (``models``' aliases), setting,
    variants, Δ [CI], p, worst / best variant (the terminal's table and the viewer's run page)."""
    r, names = m.result, models or {}
    return [m.task, f"{names.get(m.model_a, m.model_a)} − {names.get(m.model_b, m.model_b)}", m.setting, str(len(r.variants)),
            f"{_signed(r.mean)} [{_signed(r.low)},{_signed(r.high)}]", _p(r.p_value),
            f"{r.worst.name} {_signed(r.worst.diff)} / {r.best.name} {_signed(r.best.diff)}"]


def tau_text(st: Stability) -> str:
    value = "—" if st.tau != st.tau else f"{st.tau:+.2f}"
    if st.ci_low == st.ci_low:
        value += f" [{st.ci_low:+.2f}, {st.ci_high:+.2f}]"
    return value


def ranking_notes(comp: Comparison, ranking: TaskRanking, varying: set[str], models: dict[str, str] | None = None) -> list[str]:
    """What the table's verdicts rest on, in plain lines under it."""
    name: Callable[[RankedCell], str] = (lambda rc: cell_name(rc.summary, varying, models))
    best = ", ".join(name(rc) for rc in ranking.best_set)
    units = f"{ranking.units} clusters of {ranking.n} items" if ranking.clustered else f"{ranking.n} items"
    pairs = len(ranking.cells) * (len(ranking.cells) - 1) // 2
    lines = [
        f"may be best ({1 - ranking.alpha:.0%}): {best}",
        f"  (misses the true best with probability ≤ {ranking.alpha:.0%}: step-down max-T over {pairs} pairs, "
        f"{units} resampled jointly {ranking.resamples:,} times)",
    ]
    tests = sorted({rc.vs_best.test for rc in ranking.cells if rc.vs_best is not None})
    if tests:
        lines.append("  Δ [CI]: cell − best, this pair alone: " + "; ".join(METHOD_NAMES.get(t, t) for t in tests)
                     + ". p adj: over all pairs; it decides the verdict.")
    for rc in ranking.cells[1:]:
        if rc.verdict.code == "worse" and rc.beaten_by is not None:
            lines.append(f"  {name(rc)}: worse than {cell_name(rc.beaten_by, varying, models)} ({rc.verdict.detail})")
        elif rc.verdict.detail and rc.verdict.code in ("inconclusive", "equivalent"):
            lines.append(f"  {name(rc)}: {rc.verdict.text}: {rc.verdict.detail}")
    unfinished = [rc for rc in ranking.cells if rc.summary.missing and comp.raced(rc.summary.cell) is None]
    if unfinished:
        lines.append(f"  unfinished (n = stored/planned): {', '.join(name(rc) for rc in unfinished)}: each score is over the items stored; "
                     f"the ranking, Δ and verdicts pair every cell on the {ranking.n} items all cells have (run the same command "
                     "again to finish)")
    if ranking.margin is None and any(rc.verdict.code == "inconclusive" for rc in ranking.cells):
        lines.append("  (pass --margin M to test equivalence within ±M and see the items each comparison would need)")
    return lines + race_lines(comp, ranking, varying, models)


def verdict_text(comp: Comparison, rc: RankedCell) -> str:
    """The verdict column: the verdict, and for a cell with fewer items than planned why (a race stopped it, or the run is unfinished)."""
    raced = comp.raced(rc.summary.cell)
    return rc.verdict.text + (race_mark(raced.status, raced.round) if raced is not None else " (unfinished)" if rc.summary.missing else "")


def race_mark(status: str, round_: int) -> str:
    """What the verdict column adds for a cell of a race (``--until-decided``)."""
    return {"eliminated": f" (race: out at round {round_})", "winner": " (race: winner)", "equivalent": " (race: equivalent)",
            "undecided": " (race: undecided)"}.get(status, " (race: unfinished)")


def race_lines(comp: Comparison, ranking: TaskRanking, varying: set[str], models: dict[str, str] | None = None) -> list[str]:
    """The race's decision for the task (an ``--until-decided`` run): who was eliminated when and by whom, and its guarantee."""
    by_id = {(rc.summary.cell.run_id, rc.summary.cell.cell_id): rc.summary for rc in ranking.cells}
    _, signed, unit = number_formats(ranking)
    lines: list[str] = []
    for race in comp.race_of(ranking.task):

        def name(cell_id: str | None, run: str = race.run_id) -> str:
            summary = by_id.get((run, cell_id or ""))
            return cell_name(summary, varying, models) if summary is not None else str(cell_id)

        survivors = [c for c in race.cells if c.status != "eliminated"]
        names = ", ".join(name(c.cell_id) for c in survivors)
        decision = {
            "winner": f"winner {names}", "equivalent": f"equivalent within ±{signed(race.margin or 0).lstrip('+')}{unit}: {names}",
            "budget": f"stopped at its budget, undecided among {names}", "exhausted": f"every item scored, undecided among {names}",
        }.get(race.reason, f"still racing (interrupted: the same command resumes it): {names}")
        full = race.population * len(race.cells)
        lines.append(f"race (--until-decided, {race.metric}, α = {race.alpha:g}, rounds of {race.round_items} items in one seeded order): "
                     f"{decision}, after {race.rounds} round(s); {race.evaluations:,} of {full:,} item evaluations "
                     f"({race.evaluations / full:.0%}), {race.requests:,} requests")
        for c in sorted((c for c in race.cells if c.status == "eliminated"), key=lambda c: (c.round, c.cell_id)):
            cs = "" if c.difference is None else f": {name(c.beaten_by)} − it in [{signed(c.difference[0])}, {signed(c.difference[1])}]{unit}"
            lines.append(f"  {name(c.cell_id)}: eliminated at round {c.round} ({c.items} items) by {name(c.beaten_by)}{cs}")
        lines.append(f"  guarantee: {race.guarantee}; about the mean over these {race.population} items (what the full run measures); "
                     f"unscorable items counted as {race.worst:g}")
        if any(c.items < race.population for c in race.cells):
            lines.append(f"  the table above pairs every cell on the {ranking.n} items all have: for raced cells it is a fixed-n test on items "
                         "the race chose when to stop at, so its level is not guaranteed; the race's decision is the one that is. "
                         "The full-run comparison: the same command without --until-decided (stored items come from the response cache)")
    return lines


def comparison_csv(comp: Comparison) -> str:
    """The ranked cells as CSV (one row per cell, the same fields as ``--json``)."""
    rows = comp.rows()
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def diff_view(label_a: str, label_b: str, metric: str, diffs: Sequence[ItemDiff], n_shared: int, out: Console | None = None,
              limit: int | None = None) -> None:
    """Items where two cells disagree: prompts, answers and scores side by side."""
    out = out or console()
    out.print(f"[bold]{len(diffs)}[/] of {n_shared} shared items disagree on {metric}:  A = {label_a}   B = {label_b}", highlight=False)
    for d in list(diffs)[:limit]:
        table = Table(title=f"item {d.item_id} — target: {d.target}", title_justify="left", show_lines=True, expand=True)
        table.add_column(f"A  {metric}={d.score_a:g}", ratio=1)
        table.add_column(f"B  {metric}={d.score_b:g}", ratio=1)
        pa, pb = prompt_text(prompt_from_json(d.prompt_a)), prompt_text(prompt_from_json(d.prompt_b))
        table.add_row(Text(pa if pa != pb else "(same prompt as B)"), Text(pb))
        table.add_row(Text(f"answer: {d.response_a}"), Text(f"answer: {d.response_b}"))
        out.print(table)
    if limit is not None and len(diffs) > limit:
        out.print(f"... {len(diffs) - limit} more (use --limit)")
