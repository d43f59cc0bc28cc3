"""What the run, A/B and sensitivity pages show, gathered from the store: one source for the web app
(``harness view``) and for the file export (``harness report``), so a page and its export cannot
disagree. No HTTP here: a run or label that is not there is ``NotFound``, which the app turns into a
404 and the CLI into an error message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.ab import ABReport, ab_compare
from harness.analysis.compare import Comparison, ItemDiff, TaskRanking, item_diff
from harness.analysis.sensitivity import analyse
from harness.core.errors import HarnessError
from harness.prompts.messages import prompt_from_json, prompt_text
from harness.report.ab import with_checks
from harness.report.plots import Plot, stability_plot, task_plots, tuning_plots
from harness.report.terminal import contrast_row, tau_text
from harness.report.tune import cards_for_runs
from harness.store import Store
from harness.store.browse import RunOverview, ab_partners, run_overview
from harness.tune.card import TuneCard
from harness.tune.overlap import check_overlap_runs
from harness.view.decide import AbChoice, AbTaskView, CardView, SensitivityView, ab_choices, ab_task_views, card_view, sensitivity_view
from harness.view.pages import Provenance, TaskView, provenance, task_views


class NotFound(HarnessError):
    """A run, task, model label or item the database does not hold."""


def overview_of(store: Store, run_id: str) -> RunOverview:
    overview = run_overview(store, run_id)
    if overview is None:
        raise NotFound(f"no run {run_id} in {store.path}")
    return overview


def values(page: Any) -> dict[str, Any]:
    """A page's fields and properties as template keywords (one level: the records inside keep their attributes)."""
    names = [f.name for f in dataclasses.fields(page)] + [n for n, v in vars(type(page)).items() if isinstance(v, property)]
    return {name: getattr(page, name) for name in names}


@dataclass(frozen=True)
class DiffView:
    """The items where the best cell and the next-ranked cell that differs from it disagree (the file report's table)."""

    rank: int
    label_a: str
    label_b: str
    metric: str
    shared: int
    rows: list[tuple[ItemDiff, str, str]]  # the difference, prompt A, prompt B
    total: int


@dataclass(frozen=True)
class ComparisonFacts:
    """The settings a comparison's verdicts hold at (the page's caption)."""

    confidence: float
    alpha: float
    margin: float | None


@dataclass(frozen=True)
class RunResults:
    """What a run page shows from the runs' comparison: plain values, so a digest can keep them (harness/view/digest.py)."""

    tasks: list[TaskView]
    plots: dict[str, list[Plot]]  # per task, in page order
    extra_plots: list[Plot]  # across tasks: rank stability of the prompt variants
    stability: list[tuple[str, str, str, int, str]]  # task, setting A, setting B, variants, τ [CI]
    contrasts: list[list[str]]  # task, A − B, setting, variants, Δ [CI], p, worst / best variant (the terminal's rows)
    warnings: list[str]
    problem: str | None  # why there is no comparison (None when there is one)
    facts: ComparisonFacts | None


def run_results(comp: Comparison | None, problem: str | None = None) -> RunResults:
    """The run page's values from the comparison ``comp`` (None: nothing to compare, ``problem`` says why)."""
    if comp is None:
        return RunResults([], {}, [], [], [], [], problem, None)
    return RunResults(task_views(comp), {ranking.task: task_plots(comp, ranking) for ranking in comp.rankings},
                      [p for p in [stability_plot(comp)] if p is not None],
                      [(s.task, s.setting_a, s.setting_b, s.n_variants, tau_text(s)) for s in comp.stability],
                      [contrast_row(m) for m in comp.models], list(comp.warnings), problem,
                      ComparisonFacts(comp.confidence, comp.alpha, comp.margin))


@dataclass(frozen=True)
class RunPage:
    overviews: list[RunOverview]
    results: RunResults
    margin: float | None
    provenances: list[Provenance]
    diffs: dict[str, DiffView]  # per task; the file report only (the app links to the items page instead)
    cards: list[CardView]
    card_plots: dict[str, list[Plot]]  # per card name: its tuning curve
    note: str | None = None  # how the page was made, when that matters to the reader (a big run computed without its digest)

    @property
    def overview(self) -> RunOverview:
        return self.overviews[0]


def page_values(page: RunPage) -> dict[str, Any]:
    """The run page's template keywords: its own fields and its results' (tasks, plots, facts...)."""
    return {**values(page), **values(page.results)}


def _best_diff(store: Store, ranking: TaskRanking, limit: int) -> DiffView | None:
    first = ranking.cells[0].summary
    for rc in ranking.cells[1:]:
        metric, diffs, shared = item_diff(store, first.cell, rc.summary.cell, ranking.metric)
        if diffs:
            rows = [(d, prompt_text(prompt_from_json(d.prompt_a)), prompt_text(prompt_from_json(d.prompt_b))) for d in diffs[:limit]]
            return DiffView(rc.rank, first.label, rc.summary.label, metric, shared, rows, len(diffs))
    return None


def tuning_cards(cards: Sequence[TuneCard | None]) -> tuple[list[CardView], dict[str, list[Plot]]]:
    """Each card once (by folder): its view and its curves' plots, by card name."""
    unique = {c.folder.resolve(): c for c in cards if c is not None}
    views = [card_view(c) for c in unique.values()]
    return views, {view.name: tuning_plots(card) for view, card in zip(views, unique.values())}


def build_run_page(store: Store, overviews: Sequence[RunOverview], results: RunResults, *, margin: float | None = None,
                   comp: Comparison | None = None, diff_limit: int = 0, extra_cards: Sequence[TuneCard] = ()) -> RunPage:
    """The run page of ``overviews`` (one run in the app; the runs a file report compares) showing ``results`` (from their
    comparison, or a digest of it). ``diff_limit`` > 0 adds each task's disagreeing items from ``comp`` (the file report)."""
    diffs: dict[str, DiffView] = {}
    if comp is not None and diff_limit > 0:
        for ranking in comp.rankings:
            if len(ranking.cells) >= 2 and (found := _best_diff(store, ranking, diff_limit)) is not None:
                diffs[ranking.task] = found
    cards, card_plots = tuning_cards([*cards_for_runs(store, [o.run.id for o in overviews]), *extra_cards])
    return RunPage(list(overviews), results, margin, [provenance(o) for o in overviews], diffs, cards, card_plots)


@dataclass(frozen=True)
class AbPage:
    overview: RunOverview  # the tuned side's run
    base_overview: RunOverview
    report: ABReport | None
    tasks: list[AbTaskView]
    cards: list[CardView]
    card_plots: dict[str, list[Plot]]
    problem: str | None
    margin: float | None
    params: dict[str, str | None]  # the query that chose this pairing
    swap: dict[str, str | None]  # the query of the same pair with the sides swapped


@dataclass(frozen=True)
class AbChoicePage:
    overview: RunOverview
    choices: list[AbChoice]


@dataclass(frozen=True)
class AbQuery:
    """Which A/B to show: the tuned run, its base run (the same run when None) and, where a run holds several models, labels;
    ``options``: ``ab_compare``'s keywords (metric, alpha, margin, ...), as ``harness ab`` passes them."""

    tuned_run: str
    base_run: str | None = None
    base: str | None = None
    tuned: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def _checked_ab(store: Store, base_run: str, tuned_run: str, query: AbQuery) -> ABReport:
    """``ab_compare`` with the checks ``harness report --ab`` adds (overlap with the tuned model's training items,
    degenerate cells): shown, never refused."""
    report = ab_compare(store, base_run, tuned_run, base_label=query.base, tuned_label=query.tuned, **query.options)
    try:
        overlap = check_overlap_runs(store, report.base_run, report.tuned_run, tuned_label=report.tuned, allow=True)
        unchecked = []
    except ValueError as exc:  # a model entry this install cannot read (a backend plugin no longer installed)
        overlap, unchecked = None, [f"overlap with the tuned model's training items not checked: {str(exc).splitlines()[-1].strip()}"]
    report = with_checks(report, store, overlap)
    return dataclasses.replace(report, notes=[*report.notes, *unchecked])


def build_ab_page(store: Store, query: AbQuery, computed: ABReport | None = None) -> AbPage | AbChoicePage:
    """``harness ab --base-run BASE --tuned-run RUN [--base LABEL] [--tuned LABEL]`` as a page, with the checks
    ``harness report --ab`` adds (shown, never refused); without a base run or labels, the pairings to choose from.
    ``computed``: that A/B, checked, when the caller has it already (``harness ab --html`` printed it)."""
    overview = overview_of(store, query.tuned_run)
    if query.base_run is None and query.base is None and query.tuned is None:
        return AbChoicePage(overview, ab_choices(overview, ab_partners(store, query.tuned_run)))
    base_overview = overview_of(store, query.base_run) if query.base_run else overview
    for label, side, role in ((query.base, base_overview, "base"), (query.tuned, overview, "tuned")):
        if label is not None and label not in side.models:
            raise NotFound(f"run {side.run.id} has no {role} model {label} (its models: {', '.join(side.models)})")
    problem, report, tasks = None, None, []
    cards: list[CardView] = []
    card_plots: dict[str, list[Plot]] = {}
    try:
        report = computed if computed is not None else _checked_ab(store, base_overview.run.id, overview.run.id, query)
        tasks = ab_task_views(store, report)
        cards, card_plots = tuning_cards(cards_for_runs(store, [report.base_run, report.tuned_run]))
    except HarnessError as exc:
        problem = str(exc)
    params = {"base_run": query.base_run, "base": query.base, "tuned": query.tuned}
    swap = {"base_run": overview.run.id, "base": query.tuned, "tuned": query.base}
    return AbPage(overview, base_overview, report, tasks, cards, card_plots, problem, query.options.get("margin"), params, swap)


@dataclass(frozen=True)
class SensitivityPage:
    overview: RunOverview
    runs: list[str]
    view: SensitivityView | None
    problem: str | None


def build_sensitivity_page(store: Store, run_id: str, also: Sequence[str] = (), options: dict[str, Any] | None = None) -> SensitivityPage:
    """``harness sensitivity RUN [RUN ...]`` as a page: this run and ``also``."""
    overview = overview_of(store, run_id)
    runs = list(dict.fromkeys([run_id, *(overview_of(store, r).run.id for r in also if r)]))
    view, problem = None, None
    try:
        result = analyse(store, runs, **(options or {}))
        if result.slices:
            view = sensitivity_view(result)
        else:
            problem = f"runs {', '.join(runs)}: no factor varies (each needs two settings that differ only in it)"
    except HarnessError as exc:
        problem = str(exc)
    return SensitivityPage(overview, runs, view, problem)
