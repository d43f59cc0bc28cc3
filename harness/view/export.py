"""``harness report``: the run, A/B and tuning pages of ``harness view`` written as one self-contained HTML file.

The same values (harness/view/context.py) through the same templates, in the static environment
(harness/view/render.py): the stylesheet inline, every plot the same Vega-Lite spec rendered to SVG by
vl-convert, links shown as text. Nothing in the file loads a script, a style or an image from anywhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis.ab import ABReport
from harness.analysis.compare import Comparison
from harness.analysis.sensitivity import Sensitivity
from harness.core.errors import HarnessError
from harness.core.files import write_atomic
from harness.report.plots import Plot, render_svgs
from harness.store import Store
from harness.tune.card import TuneCard
from harness.view.context import (
    AbChoicePage,
    AbQuery,
    RunPage,
    SensitivityPage,
    build_ab_page,
    build_run_page,
    overview_of,
    page_values,
    run_results,
    tuning_cards,
    values,
)
from harness.view.decide import sensitivity_view
from harness.view.render import COLUMN_PX, ROW_PX, environment, stylesheet

__all__ = ["write_ab_report", "write_report", "write_sensitivity_report", "write_tuning_report"]


class _Figures:
    """The page's plots to SVG, all at once after the page is rendered (one vl-convert pass, or one fresh process where
    vl-convert cannot run in this one): the template gets a placeholder per figure. Each SVG's element ids are prefixed
    with its figure's number: the SVGs share one document, and two heatmaps' legends would otherwise both define (and
    fill from) ``gradient_0``."""

    def __init__(self) -> None:
        self.wanted: list[tuple[Plot, int]] = []
        self.token = f"harness-figure-{secrets.token_hex(8)}-"

    def __call__(self, plot: Plot, wide: bool) -> str:
        self.wanted.append((plot, ROW_PX if wide else COLUMN_PX))
        return f"{self.token}{len(self.wanted) - 1}."

    def fill(self, html: str) -> str:
        svgs = render_svgs([(plot.spec, width) for plot, width in self.wanted]) if self.wanted else []
        for n, svg in enumerate(svgs):
            prefix = f"f{n + 1}-"
            for name in set(re.findall(r'\bid="([^"]+)"', svg)):
                svg = svg.replace(f'id="{name}"', f'id="{prefix}{name}"').replace(f"url(#{name})", f"url(#{prefix}{name})")
                svg = svg.replace(f'href="#{name}"', f'href="#{prefix}{name}"')
            html = html.replace(f"{self.token}{n}.", svg, 1)
        return html


def _write(path: Path, template: str, db: str, page: dict[str, Any]) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = _Figures()
    env = environment(static=True, svg=figures, css=stylesheet(), generated=stamp)
    html = figures.fill(env.get_template(template).render(db=db, **page))
    write_atomic(path, [html])
    path.chmod(0o644)  # a report is meant to be shared (write_atomic's temp file is private)
    return path


def write_report(store: Store, comp: Comparison, path: Path, *, diff_limit: int = 30, cards: Sequence[TuneCard] = ()) -> RunPage:
    """The run page of the comparison's runs, with each task's disagreeing items (up to ``diff_limit``) and the tuning
    cards of any tuned model in them (and ``cards``); returns what the page shows."""
    overviews = [overview_of(store, run) for run in comp.runs]
    page = build_run_page(store, overviews, run_results(comp), margin=comp.margin, comp=comp, diff_limit=diff_limit, extra_cards=cards)
    _write(path, "run.html", str(store.path), page_values(page))
    return page


def write_ab_report(store: Store, query: AbQuery, path: Path, computed: ABReport | None = None) -> Path:
    """The A/B page of ``query`` (the verdict, flips, clusters, tuning cards); an A/B that cannot be computed is an error.
    ``computed``: that A/B, checked, when the caller has it (it is not computed again)."""
    page = build_ab_page(store, query, computed)
    if isinstance(page, AbChoicePage):
        raise HarnessError("harness report --ab: name the base and the tuned run")
    if page.problem is not None:
        raise HarnessError(f"harness report --ab: {page.problem}")
    return _write(path, "ab.html", str(store.path), values(page))


def write_sensitivity_report(store: Store, result: Sensitivity, path: Path) -> Path:
    """The sensitivity page of ``result`` (``harness sensitivity RUN ... -o FILE``): overview, each factor's plot, slices, tests."""
    if not result.slices:
        raise HarnessError(f"runs {', '.join(result.runs)}: no factor varies (each needs two settings that differ only in it)")
    page = SensitivityPage(overview_of(store, result.runs[0]), list(result.runs), sensitivity_view(result), None)
    return _write(path, "sensitivity.html", str(store.path), values(page))


def write_tuning_report(cards: Sequence[TuneCard], path: Path) -> Path:
    """The tuning cards alone (``harness report --tune OUT``): facts, curves and their points."""
    views, plots = tuning_cards(cards)
    return _write(path, "tune.html", ", ".join(str(c.folder) for c in cards), {"cards": views, "card_plots": plots})
