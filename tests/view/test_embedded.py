"""The viewer on a real run of the embedded model (Gemma 3 270M on ARC-Easy from ../shared/data: 3 prompt variants x
{0, 5} shots), in real headless Chromium under uvicorn: every page loads, the plots are drawn and fit at 1280 and 1920
px, search and a filter narrow the outputs matrix, an item shows its prompt with the demonstrations and each choice's
log-prob; and ``harness report`` of the same run shows the same verdict in one file."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from harness.store import Store
from harness.view import create_app
from tests.browser import LOADS
from tests.helpers import cli
from tests.view.browsing import drawn, page_fits, plot_fits, rows_full
from tests.view.conftest import serving

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def arc(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, embedded_model: Path) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("arc") / "harness.db"
    assert cli("run", "--db", db, "--task", ROOT / "tests" / "tasks" / "arc_easy", "--data-dir", shared_data, "--shots", "0", "5",
               "--limit", "8", "--quiet") == 0
    store = Store.open_read_only(db)
    try:
        return db, store.resolve_run("latest")
    finally:
        store.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    yield page
    context.close()


def test_every_page_of_an_embedded_model_run(tab: Any, arc: tuple[Path, str], tmp_path: Path) -> None:
    db, run = arc
    with serving(db) as url:
        outside: list[str] = []
        tab.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
        tab.goto(url)
        assert [r.get_attribute("data-run") for r in tab.locator("tr.run").all()] == [run]
        assert "arc_easy_example" in tab.locator("tr.run").inner_text() and "finished" in tab.locator("tr.run").inner_text()
        for width in (1280, 1920):
            page_fits(tab, tmp_path, width)
        tab.click(f'a[href="/runs/{run}"]')
        verdict = tab.locator("p.verdict").first.inner_text()
        assert verdict.startswith("On arc_easy_example (acc, 8 items)") and "may be best" in verdict
        assert tab.locator("table.ranked tbody tr").count() == 6
        provenance = tab.locator("section.provenance").inner_text()
        assert "gemma" in provenance.lower() and "sha256" in provenance
        assert tab.locator("details.template").count() == 3  # each template's text, under its hash
        for width in (1280, 1920):
            tab.set_viewport_size({"width": width, "height": 900})
            figures = drawn(tab)
            assert [f.get_attribute("data-plot") for f in figures] == ["scores", "differences", "heatmap", "spread", "stability"]
            for figure in figures:
                plot_fits(figure, width, tmp_path)
            rows_full(figures[:4])
            page_fits(tab, tmp_path, width)
        # the outputs matrix, a search over the inputs, a filter
        tab.click("text=items of arc_easy_example")
        assert tab.locator("tr.item").count() == 8 and tab.locator("th.cell").count() == 6
        first = tab.locator("tr.item").first
        question = first.locator("td.input").inner_text().strip().splitlines()[-1]
        word = max(re.findall(r"[A-Za-z]{6,}", question), key=len)
        tab.fill('input[name="q"]', word)
        tab.click("#item-filters button")
        tab.wait_for_url(re.compile(r"q="))
        assert 1 <= int(tab.locator("#total").inner_text()) <= 8
        assert all(word.lower() in r.inner_text().lower() for r in tab.locator("tr.item").all())
        tab.fill('input[name="q"]', "")
        tab.select_option('select[name="show"]', "disagree")
        tab.click("#item-filters button")
        tab.wait_for_url(re.compile(r"show=disagree"))
        disagree = int(tab.locator("#total").inner_text())
        assert 0 <= disagree <= 8
        for row in tab.locator("tr.item").all():  # the cells shown do not all score the item alike
            assert len({c.get_attribute("class") for c in row.locator("td.out").all()}) > 1
        page_fits(tab, tmp_path, 1280)
        # one item: the rendered prompt with its five demonstrations, each choice's log-prob, the chosen one marked
        tab.goto(f"{url}/runs/{run}/items?task=arc_easy_example")
        item = tab.locator("tr.item").first.get_attribute("data-item")
        tab.locator("tr.item").first.locator("a").first.click()
        tab.wait_for_url(re.compile(rf"/items/{re.escape(item)}$"))
        assert tab.locator("section.item-cell").count() == 6
        assert tab.locator("tr.chosen").count() == 6
        logprobs = [float(t) for t in re.findall(r"-\d+\.\d{3}", tab.inner_text("main"))]
        assert len(logprobs) >= 6 * 3 and all(v < 0 for v in logprobs)
        assert "Question:" in tab.locator("pre.prompt").first.inner_text()
        page_fits(tab, tmp_path, 1920)
        # the sensitivity page: each factor's range plot drawn
        tab.goto(f"{url}/runs/{run}/sensitivity")
        for figure in drawn(tab):
            plot_fits(figure, 1280, tmp_path)
        assert tab.dialogs == [] and outside == []


def test_report_of_the_run_is_the_run_page_in_one_file(arc: tuple[Path, str], tmp_path: Path, chromium: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db, run = arc
    out = tmp_path / "report.html"
    assert cli("report", "--db", db, "-o", out) == 0
    capsys.readouterr()
    source = out.read_text()
    page = TestClient(create_app(db), base_url="http://127.0.0.1").get(f"/runs/{run}").text

    def verdicts(text: str) -> list[str]:
        return [html.unescape(v) for v in re.findall(r'<p class="verdict">(.*?)</p>', text, re.S)]

    assert verdicts(source) == verdicts(page) and verdicts(source)[0].startswith("On arc_easy_example")
    assert source.count("<svg") == 5 and not re.search(LOADS, source)
