"""``harness report``, ``report --ab`` and ``sensitivity -o``: the viewer's pages written as one file. What a page
shows and its export shows come from the same values and templates, so these check what the export adds: nothing
loaded from anywhere, plots as server-rendered SVG, markup in names and outputs kept as text (in the SVG as well)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from harness.view import create_app
from harness.view.render import stylesheet
from tests.browser import LOADS, read_png
from tests.helpers import cli, write_task
from tests.view.browsing import rows_full
from tests.view.conftest import IMG, SCRIPT, Stored

MARKUP_LABEL = "<svg onload=alert(2)>"


def _verdict(text: str) -> str:
    return html.unescape(re.search(r'<p class="verdict">(.*?)</p>', text, re.S).group(1))  # type: ignore[union-attr]


def test_report_is_the_run_page_with_its_plots_drawn_on_the_server(stored: Stored, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert cli("report", "--db", stored.db, stored.toy, "-o", out) == 0
    assert "1 task(s), 8 cells" in capsys.readouterr().out
    source = out.read_text()
    assert not re.search(LOADS, source), "the report must not load anything"
    page = TestClient(create_app(stored.db), base_url="http://127.0.0.1").get(f"/runs/{stored.toy}").text
    assert _verdict(source) == _verdict(page)  # one source: the same verdict sentence as the app's run page
    assert re.findall(r'<tr data-verdict="(\w+)"', source) == re.findall(r'<tr data-verdict="(\w+)"', page)
    names = re.findall(r'<figure class="plot" data-plot="([\w-]+)">', page)
    assert names == re.findall(r'<figure class="plot" data-plot="([\w-]+)">', source) and {"scores", "differences", "heatmap"} <= set(names)
    assert source.count("<svg") == len(names) and 'class="plot-spec"' not in source  # each spec rendered, none left to draw
    ids = re.findall(r'\bid="([^"]+)"', source)
    assert len(ids) == len(set(ids))  # the inline SVGs' gradient and clip ids do not collide
    assert "Items where the best cell and #" in source and "Provenance" in source and "sha256" in source
    (style,) = re.findall(r"<style>\n(.*?)\n</style>", source, re.S)
    assert style == stylesheet()  # inlined as it is: an escaped quote would drop every rule naming a font


@pytest.mark.parametrize("width", [1400, 1920])
def test_report_rows_are_full_and_its_plots_fit_their_columns(stored: Stored, tmp_path: Path, browser: Any, width: int,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert cli("report", "--db", stored.db, stored.toy, "-o", out) == 0
    capsys.readouterr()
    context = browser.new_context(viewport={"width": width, "height": 1000})
    tab = context.new_page()
    try:
        tab.goto(out.as_uri())
        for grid in tab.locator("div.plots").all():
            figures = grid.locator("figure.plot").all()
            rows_full(figures)
            for figure in figures:
                svg, frame = figure.locator("svg").first.bounding_box(), figure.bounding_box()
                assert svg["x"] >= frame["x"] and svg["x"] + svg["width"] <= frame["x"] + frame["width"] + 0.5, figure.get_attribute("data-plot")
                assert svg["width"] > 0.8 * frame["width"], f"{figure.get_attribute('data-plot')} leaves its column half empty"
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot = tmp_path / "shot.png"
        tab.screenshot(path=str(shot), full_page=True)
        assert read_png(shot).std() > 10
    finally:
        context.close()


def test_markup_in_model_names_and_outputs_is_text_in_the_report_and_its_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    write_task(tmp_path / "tasks", "echo", rows=6,
               spec={"type": "generate", "choices": None, "target": "{{ options[answer] }}", "metrics": ["exact_match"]},
               templates={"plain": "Q: {{ input }}\nA:", "terse": "{{ input }}"})
    assert cli("run", "--db", db, "--tasks-dir", tmp_path / "tasks", "--task", "echo", "--model", f"hostile:{MARKUP_LABEL}",
               "--quiet") == 0
    out = tmp_path / "r.html"
    assert cli("report", "--db", db, "-o", out) == 0
    source = out.read_text()
    assert not re.search(LOADS, source)
    assert SCRIPT not in source and IMG not in source and MARKUP_LABEL not in source
    assert html.escape(MARKUP_LABEL, quote=False) in source or html.escape(MARKUP_LABEL) in source
    svgs = re.findall(r"<svg.*?</svg>", source, re.S)
    assert svgs and all("onload" not in re.sub(r"&lt;svg onload=alert\(2\)&gt;", "", s) for s in svgs)
    capsys.readouterr()
