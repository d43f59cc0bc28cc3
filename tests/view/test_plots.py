"""The run page's plots: the Vega-Lite specs it embeds (as JSON in <script type="application/json">, safe
with a model label that holds </script>) are the comparison's, drawn by the vendored vega-embed
(nothing from the network; the versions its README records, the ones vl-convert renders with);
in real headless Chromium (slow) they paint, and no title is clipped at 1280 and 1920 px."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from harness.analysis.compare import compare_runs
from harness.report.plots import VEGA_LITE_VERSION, VERDICT_COLOURS, VL_CONVERT_VERSION, stability_plot, task_plots
from harness.store import Store
from harness.view import create_app
from tests.browser import has_colour
from tests.helpers import cli, write_task
from tests.view.browsing import drawn, plot_fits
from tests.view.conftest import Stored, serving

VENDOR = Path(__file__).resolve().parents[2] / "harness" / "view" / "static" / "vendor"
LABEL = "hostile:</script><script>alert('out')</script><img src=x onerror=alert(2)>"
VENDORED = {"vega.min.js": "6.2.0", "vega-lite.min.js": VEGA_LITE_VERSION, "vega-embed.min.js": "7.0.2"}
SCRIPTS = ["/static/vendor/vega.min.js", "/static/vendor/vega-lite.min.js", "/static/vendor/vega-embed.min.js", "/static/plots.js"]


class Page(HTMLParser):
    """Every <script> of a page (its attributes and text) and every figure.plot's name, as a browser parses them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.figures: list[str | None] = []
        self._open: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))
        if tag == "figure" and dict(attrs).get("class") == "plot":
            self.figures.append(dict(attrs).get("data-plot"))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None

    def specs(self) -> list[Any]:
        return [json.loads(text) for attrs, text in self.scripts if attrs.get("type") == "application/json"]

    def sources(self) -> list[str | None]:
        return [attrs.get("src") for attrs, _ in self.scripts if attrs.get("type") != "application/json"]


@pytest.fixture(scope="module")
def client(stored: Stored) -> TestClient:
    return TestClient(create_app(stored.db), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run whose model label is markup that closes the script element the specs sit in."""
    root = tmp_path_factory.mktemp("label")
    write_task(root / "tasks", "echo", rows=6, spec={"type": "generate", "choices": None, "target": "{{ options[answer] }}",
                                                     "metrics": ["exact_match"], "prompts": ["plain", "terse"]},
               templates={"plain": "Q: {{ input }}\nA:", "terse": "{{ input }}"})
    db = root / "harness.db"
    assert cli("run", "--db", db, "--tasks-dir", root / "tasks", "--task", "echo", "--model", LABEL, "--quiet") == 0
    store = Store.open_read_only(db)
    try:
        return db, store.resolve_run("latest")
    finally:
        store.close()


def test_run_page_embeds_the_comparisons_specs_and_draws_them_with_the_vendored_scripts(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}?margin=2")
    assert page.status_code == 200
    parsed = Page(page.text)
    store = Store.open_read_only(stored.db)
    try:
        comp = compare_runs(store, [stored.toy], margin=0.02)
    finally:
        store.close()
    plots = [p for ranking in comp.rankings for p in task_plots(comp, ranking)] + [stability_plot(comp)]
    assert parsed.figures == [p.name for p in plots if p] == ["scores", "differences", "heatmap", "spread", "stability"]
    assert parsed.specs() == [json.loads(json.dumps(p.spec)) for p in plots if p]
    assert parsed.sources() == SCRIPTS  # vega, vega-lite, vega-embed, then the page's own; no CDN
    for src in SCRIPTS:
        served = client.get(src)
        assert served.status_code == 200 and "javascript" in served.headers["content-type"] and len(served.content) > 500


def test_a_run_page_without_plots_loads_no_plotting_script(client: TestClient, stored: Stored) -> None:
    parsed = Page(client.get(f"/runs/{stored.failed}").text)
    assert parsed.figures == [] and parsed.sources() == []


def test_a_label_holding_a_closing_script_tag_stays_inside_the_spec(hostile_db: tuple[Path, str]) -> None:
    db, run = hostile_db
    page = TestClient(create_app(db), base_url="http://127.0.0.1").get(f"/runs/{run}")
    assert page.status_code == 200
    assert "</script><script>alert(" not in page.text and "<img src=x" not in page.text
    parsed = Page(page.text)
    assert parsed.sources() == SCRIPTS  # no script element but the page's own
    assert all(attrs.get("type") == "application/json" or attrs.get("src") for attrs, _ in parsed.scripts)
    rows = [row for spec in parsed.specs() for part in [spec, *spec.get("layer", [])] for row in part.get("data", {}).get("values", [])]
    settings = {row["setting"] for row in rows if "setting" in row}
    assert settings == {f"{LABEL} · 0-shot"}  # the label, whole, as data (heatmap and spread)


def test_the_vendored_files_are_the_versions_the_readme_records_and_vl_convert_renders_with() -> None:
    vl_convert = pytest.importorskip("vl_convert", reason="vl-convert-python is in the view extra")
    readme = (VENDOR / "README.md").read_text()
    for name, version in VENDORED.items():
        data = (VENDOR / name).read_bytes()
        assert f'"{version}"'.encode() in data, f"{name} is not version {version}"
        assert re.search(rf"`{re.escape(name)}` \| `[^`]+` \([^)]*\) \| {re.escape(version)} \| `{hashlib.sha256(data).hexdigest()}`", readme)
        assert not re.search(rb"https?://(cdn|unpkg|cdnjs)\.", data)
    for licence in ("LICENSE-vega", "LICENSE-vega-lite", "LICENSE-vega-embed"):
        assert "University of Washington Interactive Data Lab" in (VENDOR / licence).read_text()
    assert vl_convert.get_vega_version() == VENDORED["vega.min.js"]
    assert VL_CONVERT_VERSION in vl_convert.get_vegalite_versions() and VEGA_LITE_VERSION.startswith(VL_CONVERT_VERSION + ".")
    assert vl_convert.get_vega_embed_version() == VENDORED["vega-embed.min.js"]


# -- in real headless Chromium ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 1920])
def test_the_plots_paint_and_no_title_is_clipped(browser: Any, server: str, stored: Stored, tmp_path: Path, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    outside: list[str] = []
    tab.on("request", lambda r: None if r.url.startswith(server) else outside.append(r.url))
    try:
        tab.goto(f"{server}/runs/{stored.toy}?margin=2")
        figures = drawn(tab)
        assert [f.get_attribute("data-plot") for f in figures] == ["scores", "differences", "heatmap", "spread", "stability"]
        for figure in figures:
            image = plot_fits(figure, width, tmp_path)
            if figure.get_attribute("data-plot") in ("scores", "differences"):
                assert has_colour(image, VERDICT_COLOURS["worse"]) and has_colour(image, VERDICT_COLOURS["inconclusive"])
        tops = [round(f.bounding_box()["y"]) for f in figures]
        assert tops[0] == tops[1] and tops[2] == tops[3] and tops[2] > tops[0]  # two plots a row: no row half empty
        assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert dialogs == [] and outside == []
    finally:
        context.close()


@pytest.mark.slow
def test_a_hostile_label_runs_nothing_in_the_browser(browser: Any, hostile_db: tuple[Path, str], tmp_path: Path) -> None:
    db, run = hostile_db
    with serving(db) as url:
        _hostile_page_runs_nothing(browser, url, run)


def _hostile_page_runs_nothing(browser: Any, url: str, run: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        tab.goto(f"{url}/runs/{run}")
        figures = drawn(tab)
        assert [f.get_attribute("data-plot") for f in figures] == ["scores", "differences", "heatmap", "spread"]
        labels = tab.locator('figure[data-plot="heatmap"] g.role-axis-label text').evaluate_all("els => els.map(e => e.textContent)")
        assert any(text.startswith("hostile:</script><script>alert(") for text in labels), labels  # shown as text
        assert dialogs == [] and tab.locator("img").count() == 0
    finally:
        context.close()
