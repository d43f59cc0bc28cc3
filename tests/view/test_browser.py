"""The viewer in real headless Chromium (Debian's package, driven by playwright with ``executable_path``;
no browser is downloaded), against the real app under uvicorn: model output shown as text with no
script run, and a walk through every page: runs, a run, items, search, filter, an item, screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.view.browsing import drawn, page_fits, plot_fits
from tests.view.conftest import IMG, SCRIPT, Stored

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by scripts/test.sh")


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A fresh page and the dialogs (alert, confirm ...) anything on it opened."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []

    def record(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", record)
    yield tab, dialogs
    context.close()


def test_model_output_shows_as_text_and_runs_nothing(page: tuple[Any, list[str]], server: str, stored: Stored) -> None:
    tab, dialogs = page
    for path in (f"/runs/{stored.hostile}/items", f"/runs/{stored.hostile}/items/t0"):
        tab.goto(server + path)
        tab.wait_for_load_state("load")
        text = tab.inner_text("main")
        assert SCRIPT in text and IMG in text  # visible, as text
        assert tab.locator("main script").count() == 0 and tab.locator("main img").count() == 0
    assert dialogs == []  # no alert fired


@pytest.mark.slow
def test_walk_through_every_page(page: tuple[Any, list[str]], server: str, stored: Stored, tmp_path: Path) -> None:
    tab, dialogs = page
    tab.goto(server + "/")
    assert tab.locator("tr.run").count() == 3
    assert "failed" in tab.locator(f'tr[data-run="{stored.failed}"]').inner_text()
    page_fits(tab, tmp_path, 1280)
    page_fits(tab, tmp_path, 1920)
    # filter the runs by model, through the form
    tab.select_option('select[name="model"]', "skilled:0.35")
    tab.click("form.filters button")
    tab.wait_for_url(re.compile(r"model=skilled"))
    assert [r.get_attribute("data-run") for r in tab.locator("tr.run").all()] == [stored.toy]
    # open the run: the verdict first, then the ranked table
    tab.click(f'a[href="/runs/{stored.toy}"]')
    tab.wait_for_url(re.compile(rf"/runs/{stored.toy}$"))
    verdict = tab.locator("p.verdict").first.inner_text()
    assert verdict.startswith("On toy (acc, 60 items)") and "worse" in verdict
    assert tab.locator("table.ranked tbody tr").count() == 8
    assert tab.locator('tr[data-verdict="worse"]').count() >= 1
    assert "sha256" in tab.locator("section.provenance").inner_text()
    page_fits(tab, tmp_path, 1280)
    page_fits(tab, tmp_path, 1920)
    # the items of its task: the outputs matrix
    tab.click("text=items of toy")
    tab.wait_for_url(re.compile(r"/items\?task=toy"))
    assert tab.locator("tr.item").count() == 50 and tab.locator("#total").inner_text() == "60"
    assert tab.locator("th.cell").count() == 8
    page_fits(tab, tmp_path, 1280)
    page_fits(tab, tmp_path, 1920)
    # search
    tab.fill('input[name="q"]', "t question 7?")
    tab.click("#item-filters button")
    tab.wait_for_url(re.compile(r"q=t\+question\+7"))
    assert [r.get_attribute("data-item") for r in tab.locator("tr.item").all()] == ["t7"]
    # filter: wrong in the weak model's cell, right in the strong one's
    tab.fill('input[name="q"]', "")
    tab.select_option('select[name="show"]', "flips")
    cells = [c.get_attribute("data-cell") for c in tab.locator("th.cell").all()]
    tab.select_option('select[name="a"]', cells[-1])
    tab.select_option('select[name="b"]', cells[0])
    tab.click("#item-filters button")
    tab.wait_for_url(re.compile(r"show=flips"))
    flips = int(tab.locator("#total").inner_text())
    assert 0 < flips < 60
    first = tab.locator("tr.item").first
    assert "wrong" in (first.locator("td.out").nth(len(cells) - 1).get_attribute("class") or "")
    assert "right" in (first.locator("td.out").nth(0).get_attribute("class") or "")
    # open an item: its rendered prompt, demonstrations and choices
    item = first.get_attribute("data-item")
    first.locator("a").click()
    tab.wait_for_url(re.compile(rf"/items/{item}$"))
    assert tab.locator("section.item-cell").count() == 8
    assert f"Q: t question {item[1:]}?" in tab.locator("pre.prompt").first.inner_text()
    assert "f0, f1" in tab.inner_text("main")
    assert tab.locator("tr.chosen").count() == 8
    page_fits(tab, tmp_path, 1280)
    page_fits(tab, tmp_path, 1920)
    assert dialogs == []


@pytest.mark.slow
def test_ab_and_sensitivity_pages_render(page: tuple[Any, list[str]], server: str, stored: Stored, tmp_path: Path) -> None:
    """From a run page to its A/B chooser, the A/B of its two models (verdict, rows, flip tables), an item it lists, and the
    sensitivity page: each paints, fits the window at 1280 and 1920 px, and runs no script."""
    tab, dialogs = page
    tab.goto(server + f"/runs/{stored.toy}")
    tab.click("#decide-links a >> nth=0")
    tab.wait_for_url(re.compile(rf"/runs/{stored.toy}/ab$"))
    assert tab.locator("ul.ab-choices li").count() == 2
    tab.click("text=within this run: base skilled:0.35, tuned skilled:0.85")
    tab.wait_for_url(re.compile(r"base=skilled%3A0\.35"))
    assert tab.locator("#ab-verdict").inner_text().startswith("tuned is better than base on 1 of 1 task(s) (toy)")
    assert tab.locator("h1").inner_text().startswith("A/B: tuned = skilled:0.85 vs base = skilled:0.35")
    assert tab.locator("table.ab tr.pooled").count() == 1 and tab.locator("table.ab tr.cell").count() == 4 + 1  # and across prompts
    assert tab.locator("section.flips").count() == 4
    fixed = tab.locator("table.flip-table.fixed tr.flip")
    assert fixed.count() > 0 and "wrong" in (fixed.first.locator("td.out").first.get_attribute("class") or "")
    for width in (1280, 1920):
        page_fits(tab, tmp_path, width)
        figures = drawn(tab)
        assert [f.get_attribute("data-plot") for f in figures] == ["ab"]  # the toy task declares no clusters
        plot_fits(figures[0], width, tmp_path)
    item = fixed.first.get_attribute("data-item")
    fixed.first.locator("a").first.click()
    tab.wait_for_url(re.compile(rf"/items/{item}$"))
    assert tab.locator("section.item-cell").count() == 8
    tab.go_back()
    tab.click("#swap")
    tab.wait_for_url(re.compile(r"base=skilled%3A0\.85"))
    assert tab.locator("#ab-verdict").inner_text().startswith("tuned is worse than base")
    tab.goto(server + f"/runs/{stored.toy}/sensitivity")
    assert tab.locator('section.factor[data-factor="template"] tr.slice').count() == 4  # 2 models x 2 shot counts
    assert "prompt variant" in tab.locator("table.overview").inner_text() and "plain: " in tab.locator("table.slices").inner_text()
    for width in (1280, 1920):
        page_fits(tab, tmp_path, width)
        for figure in drawn(tab):  # one range plot per factor
            plot_fits(figure, width, tmp_path)
    assert dialogs == []
