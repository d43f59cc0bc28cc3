"""What the A/B and sensitivity pages of ``harness view`` show, as plain values for their templates (no HTTP here).

The A/B page is ``ab_compare`` of the two runs with the checks ``harness ab`` adds (``with_checks``: overlap with the
tuned model's training items, degenerate cells), its table rows and notes the terminal's own (``ab_rows``/``ab_notes``);
the flip table lists the items behind each cell's wins and losses (``flips``), the cluster table ``cluster_deltas``,
and the tuning card and curve are the ``tune_card.json`` of a tuned model in either run (``cards_for_runs``). The
sensitivity page is ``analyse`` of the runs, formatted by the sensitivity report's own row functions. Nothing here
computes a statistic of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.ab import ABReport, ABTask, cluster_deltas, flips
from harness.analysis.compare import answer_text
from harness.analysis.sensitivity import DESCRIPTIONS, FACTORS, Sensitivity
from harness.report.ab import AbFormat, ab_notes, ab_rows
from harness.report.numbers import percent
from harness.report.plots import Plot, ab_plot, cluster_plot, factor_plot
from harness.report.sensitivity import SLICE_HEAD, TEST_HEAD, ci_text, slice_row, test_row
from harness.report.tune import tuning_facts
from harness.store import Store, StoredItem
from harness.store.browse import RunOverview, item_rows
from harness.tune.card import TuneCard
from harness.view.pages import input_text, score_text

FLIPS_SHOWN = 100  # items listed per cell and direction; the counts are always whole
INPUT_SHOWN = 160  # characters of an item's rendered prompt in the flip table (its end: the item's own question)


@dataclass(frozen=True)
class AbChoice:
    """One pairing the A/B page can show: the tuned run's page with its base run and, where a run holds several models, labels."""

    tuned_run: str
    base_run: str
    base: str | None
    tuned: str | None
    text: str


def ab_choices(overview: RunOverview, partners: Sequence[RunOverview], limit: int = 40) -> list[AbChoice]:
    """Pairs of models within the run, then the run against each partner run in both directions."""
    run = overview.run.id
    out = []
    models = overview.models
    for base in models:
        for tuned in models:
            if base != tuned:
                out.append(AbChoice(run, run, base, tuned, f"within this run: base {base}, tuned {tuned}"))
    for other in partners:
        for base_ov, tuned_ov in ((other, overview), (overview, other)):
            for base in base_ov.models:
                for tuned in tuned_ov.models:
                    label_base = base if len(base_ov.models) > 1 else None
                    label_tuned = tuned if len(tuned_ov.models) > 1 else None
                    out.append(AbChoice(tuned_ov.run.id, base_ov.run.id, label_base, label_tuned,
                                        f"base {base} (run {base_ov.run.id}), tuned {tuned} (run {tuned_ov.run.id})"))
    return out[:limit]


@dataclass(frozen=True)
class FlipRow:
    item_id: str
    input: str
    base_answer: str
    tuned_answer: str
    base_score: str
    tuned_score: str


@dataclass(frozen=True)
class AbCellView:
    name: str
    base_cell: str
    tuned_cell: str
    n: int
    wins: int  # tuned better (fixed)
    ties: int
    losses: int  # tuned worse (broken)
    fixed: list[FlipRow]
    broken: list[FlipRow]


@dataclass(frozen=True)
class ClusterRow:
    cluster: str
    items: int
    pairs: int
    base: str
    tuned: str
    diff: str
    fixed: int
    broken: int


@dataclass(frozen=True)
class AbTaskView:
    task: str
    metric: str
    higher_is_better: bool
    verdict_code: str
    rows: list[tuple[str, str, str, str, str, str, str, bool]]  # ab_rows: cells, n, base, tuned, Δ [CI], p, verdict, pooled
    notes: list[str]
    cells: list[AbCellView]
    clusters: list[ClusterRow]
    clustered: bool
    plots: list[Plot]  # tuned − base per cell and pooled; per cluster when the task declares clusters


def _flip_rows(item_ids: Sequence[str], base: dict[str, StoredItem], tuned: dict[str, StoredItem], metric: str) -> list[FlipRow]:
    out = []
    for item_id in item_ids:
        b, t = base.get(item_id), tuned.get(item_id)
        first = t or b
        out.append(FlipRow(item_id, input_text(first, INPUT_SHOWN) if first else "", answer_text(b) if b else "(not stored)",
                           answer_text(t) if t else "(not stored)", score_text(b.scores.get(metric)) if b else "",
                           score_text(t.scores.get(metric)) if t else ""))
    return out


def _ordered(ids: Sequence[str], rows: dict[str, StoredItem]) -> list[str]:
    """Item ids in split order (the stored position), those not stored last."""
    return sorted(ids, key=lambda i: (rows[i].position if i in rows else 1 << 62, i))


def ab_task_views(store: Store, report: ABReport) -> list[AbTaskView]:
    out = []
    for t in report.tasks:
        cells = []
        for c in t.cells:
            found = flips(c)
            both = [*found.fixed, *found.broken]
            base_rows = {k[0]: v for k, v in item_rows(store, report.base_run, both, [c.base.cell.cell_id]).items()}
            tuned_rows = {k[0]: v for k, v in item_rows(store, report.tuned_run, both, [c.tuned.cell.cell_id]).items()}
            fixed = _ordered(found.fixed, tuned_rows)[:FLIPS_SHOWN]
            broken = _ordered(found.broken, tuned_rows)[:FLIPS_SHOWN]
            r = c.result
            cells.append(AbCellView(c.name, c.base.cell.cell_id, c.tuned.cell.cell_id, r.n, r.wins, r.ties, r.losses,
                                    _flip_rows(fixed, base_rows, tuned_rows, t.metric), _flip_rows(broken, base_rows, tuned_rows, t.metric)))
        fmt = AbFormat(t.percent)
        deltas = cluster_deltas(t)
        clusters = [ClusterRow(d.cluster, d.items, d.pairs, fmt.score(d.base), fmt.score(d.tuned), fmt.signed(d.diff), d.fixed, d.broken)
                    for d in deltas]
        plots = [p for p in (ab_plot(report, t), cluster_plot(t, deltas)) if p is not None]
        out.append(AbTaskView(t.task, t.metric, t.higher_is_better, t.verdict.code, ab_rows(t, report),
                              [line.strip() for line in ab_notes(t, report, fmt)], cells, clusters, _clustered(t), plots))
    return out


def _clustered(t: ABTask) -> bool:
    return t.cells[0].base.clusters is not None


@dataclass(frozen=True)
class CurvePoint:
    step: str
    value: str
    ci: str
    n: str
    best: bool


@dataclass(frozen=True)
class CardView:
    name: str
    folder: str
    metric: str
    facts: list[tuple[str, str]]
    curve: list[CurvePoint]  # the selection metric at each evaluation
    losses: list[tuple[str, str]]  # (step, train loss)


def _number(value: Any, digits: int = 4) -> str:
    return "—" if not isinstance(value, (int, float)) or value != value else f"{value:.{digits}f}"


def card_view(card: TuneCard) -> CardView:
    """The tuning card's facts (as the HTML report's table) and its curve's values, point by point."""
    data = card.data
    best = data.get("best_step")
    curve = []
    for point in data.get("eval_curve", []):
        low, high = point.get("ci_low"), point.get("ci_high")
        ci = "—" if low is None or high is None else f"[{_number(low)}, {_number(high)}]"
        curve.append(CurvePoint(str(point.get("step")), _number(point.get(card.metric)), ci, str(point.get("n") or "—"),
                                best is not None and point.get("step") == best))
    losses = [(str(p.get("step")), _number(p.get("loss"))) for p in data.get("train_loss", [])]
    return CardView(card.folder.name, str(card.folder), card.metric, tuning_facts(card), curve, losses)


@dataclass(frozen=True)
class LevelRow:
    name: str
    ci: str
    draws: int


@dataclass(frozen=True)
class SliceView:
    row: list[str]  # the report's slice row: setting, levels, min [CI], median, max [CI], max − min
    task: str
    levels: list[LevelRow]


@dataclass(frozen=True)
class FactorView:
    factor: str
    description: str
    slices: list[SliceView]
    tests: list[list[str]]  # the report's paired-test rows
    plot: Plot


@dataclass(frozen=True)
class SensitivityView:
    overview: list[list[str]]  # factor, what varies, slices, median range, largest range, where
    factors: list[FactorView]
    notes: list[str]
    slice_head: list[str]
    test_head: list[str]


def sensitivity_view(result: Sensitivity) -> SensitivityView:
    """The sensitivity report's tables (the same rows the terminal and HTML print), and each slice's levels with their CIs."""
    overview = [[f.factor, DESCRIPTIONS[f.factor], str(f.slices), percent(f.median_range), percent(f.largest.range), f.largest.context]
                for f in result.factors()]
    factors = []
    for factor in FACTORS:
        slices = [s for s in result.slices if s.factor == factor]
        if not slices:
            continue
        views = [SliceView(slice_row(s), s.task, [LevelRow(lv.name, ci_text(lv.interval), lv.draws) for lv in s.levels]) for s in slices]
        factors.append(FactorView(factor, DESCRIPTIONS[factor], views, [test_row(t) for t in result.tests if t.factor == factor],
                                  factor_plot(factor, slices, result.confidence)))
    return SensitivityView(overview, factors, list(result.notes), list(SLICE_HEAD), list(TEST_HEAD))
