"""The issue's acceptance pair: a real ``harness tune`` (a tiny LoRA adapter on the embedded Gemma 3 270M, on CPU) and a real
``harness ab`` of it against its base, then the viewer's A/B page of those two runs: the verdict and flips ``harness ab``
printed, the tuning card and its curve values as the card holds them, in TestClient and in headless Chromium."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from harness.view import create_app
from tests.helpers import cli
from tests.view.browsing import drawn, page_fits, plot_fits
from tests.view.conftest import serving


def _cells(row: str) -> list[str]:
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", c))).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


@pytest.mark.slow
def test_ab_page_of_a_real_tune_and_ab_pair(tmp_path: Path, db_path: Path, embedded_model: Path, browser: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapter"
    assert cli("tune", "--task", "capitals", "--prompt", "qa_plain", "-o", out, "--steps", "2", "--eval-steps", "1", "--batch-size", "2",
               "--eval-limit", "6", "--lr", "1e-3", "--quiet", "--json") == 0
    card = json.loads(capsys.readouterr().out)
    assert cli("ab", "--db", db_path, "--adapter", out, "--task", "capitals", "--prompt", "qa_plain", "--limit", "6", "--quiet", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    (task,) = data["tasks"]
    client = TestClient(create_app(db_path), base_url="http://127.0.0.1")
    choices = client.get(f"/runs/{data['tuned_run']}/ab").text
    path = f"/runs/{data['tuned_run']}/ab?base_run={data['base_run']}"
    assert f'href="{path}"' in choices  # the chooser offers the base run
    page = client.get(path)
    assert page.status_code == 200
    assert html.unescape(re.search(r'id="ab-verdict">(.*?)</p>', page.text, re.S).group(1)) == data["verdict"]  # type: ignore[union-attr]
    assert f"tuned = {html.escape(data['tuned'])} vs base = {html.escape(data['base'])}" in page.text
    (cell,) = task["cells"]
    assert f'data-fixed="{cell["tuned_wins"]}" data-broken="{cell["tuned_losses"]}"' in page.text
    # the tuning card of the adapter, and its curve point by point
    section = re.search(rf'<section class="tuning" data-card="{out.name}">(.*?)</section>', page.text, re.S).group(1)  # type: ignore[union-attr]
    facts = {html.unescape(k).strip(): html.unescape(v).strip() for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", section, re.S)}
    assert facts["base model"] == "hf:gemma-3-270m" and facts["kind"] == "lora" and facts["training items"] == "34"
    assert facts["selection"] == "capitals: train holdout: 6 of 40 items, seed 1234"
    curve = re.search(r'<table class="tune-curve">.*?<tbody>(.*?)</tbody>', section, re.S).group(1)  # type: ignore[union-attr]
    rows = [_cells(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", curve, re.S)]
    assert [r[:2] for r in rows] == [[str(p["step"]), f"{p['acc']:.4f}"] for p in card["eval_curve"]]
    assert [r[4] for r in rows] == ["best (kept)" if p["step"] == card["best_step"] else "" for p in card["eval_curve"]]
    assert f"train loss at {len(card['train_loss'])} logged steps" in section
    # and in the browser: it paints and fits at both widths, with its plots (the A/B's and the card's curves) drawn
    with serving(db_path) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            tab = context.new_page()
            tab.goto(url + path)
            assert tab.locator("#ab-verdict").inner_text() == data["verdict"]
            assert tab.locator(f'section.tuning[data-card="{out.name}"] table.tune-curve tbody tr').count() == len(card["eval_curve"])
            for width in (1280, 1920):
                tab.set_viewport_size({"width": width, "height": 900})
                figures = drawn(tab)
                assert [f.get_attribute("data-plot") for f in figures] == ["ab", "tune-loss", "tune-eval"]
                for figure in figures:
                    plot_fits(figure, width, tmp_path)
                page_fits(tab, tmp_path, width)
        finally:
            context.close()
