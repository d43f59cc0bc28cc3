"""The HTML report: one self-contained file, opened in real headless Chromium (Debian's
package, installed by scripts/setup.sh) to check that the plots and tables render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.store.store import Store
from tests.browser import LOADS, browse, has_colour, read_png
from tests.decide_support import toy_task
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[2]


def check_report(chromium: str, report: Path, tmp: Path, cells: int, tasks: int = 1) -> str:
    """Open the report in Chromium; check the DOM (verdict, tables, plots) and the screenshot (coloured marks)."""
    source = report.read_text()
    assert not re.search(LOADS, source), "the report must not load anything"
    dom = browse(chromium, report, tmp, "--dump-dom").stdout
    assert dom.count('<p class="verdict">') == tasks  # the verdict sentence of each task leads its section
    assert len(re.findall(r"<table class=\"ranked\".*?</table>", dom, re.S)) == tasks
    rows = sum(block.count("<tr data-verdict=") for block in re.findall(r"<table class=\"ranked\".*?</table>", dom, re.S))
    assert rows == cells
    for plot in ("scores", "differences", "heatmap"):
        figures = re.findall(rf'<figure class="plot" data-plot="{plot}">(.*?)</figure>', dom, re.S)
        assert len(figures) == tasks and all("<svg" in f and "role-mark" in f for f in figures), plot
    ids = re.findall(r'\bid="([^"]+)"', source)
    assert len(ids) == len(set(ids)), "element ids repeat across the inline SVGs"
    shot = tmp / "shot.png"
    browse(chromium, report, tmp, f"--screenshot={shot}", "--window-size=1400,1600")
    image = read_png(shot)
    assert image.shape[1] == 1400 and image.std() > 10  # not blank
    assert has_colour(image, "#1b7837")  # the best cell's marks and badge were painted
    return dom


def test_report_renders_in_chromium(tmp_path: Path, db_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=80)
    assert cli("run", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--shots", "0", "2",
               "--model", "skilled:0.85", "--model", "skilled:0.35", "--quiet") == 0
    report = tmp_path / "report.html"
    capsys.readouterr()
    assert cli("report", "--db", db_path, "-o", report) == 0
    assert "wrote" in capsys.readouterr().out
    dom = check_report(chromium, report, tmp_path, cells=8)
    image = read_png(tmp_path / "shot.png")
    assert has_colour(image, "#b2182b")  # the weaker model's cells are "worse": a second colour
    assert "Items where the best cell and #" in dom and 'data-plot="spread"' in dom and 'data-plot="stability"' in dom and "Kendall" in dom
    assert "skilled:0.35" in dom and "p adj" in dom and "may be best (95%)" in dom and "worse than" in dom


def test_ab_report_renders_in_chromium(tmp_path: Path, db_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=60)
    page = tmp_path / "ab.html"
    assert cli("ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--base", "skilled:0.35",
               "--tuned", "skilled:0.85", "--quiet", "--html", page) == 0
    terminal = capsys.readouterr().out
    source = page.read_text()
    assert not re.search(LOADS, source), "the report must not load anything"
    dom = browse(chromium, page, tmp_path, "--dump-dom").stdout
    assert dom.count("<table class=\"ab\"") == 1 and dom.count("<tr class=\"pooled\">") == 1
    verdict = re.search(r'<p class="verdict" id="ab-verdict">(.*?)</p>', dom, re.S)
    assert verdict and verdict.group(1).startswith("tuned is better than base") and "tuned is better than base" in terminal
    assert "Δ = tuned − base" in dom and 'class="flip-table fixed"' in dom


@pytest.mark.slow
def test_arc_easy_prompts_and_shots_end_to_end(tmp_path: Path, db_path: Path, shared_data: Path, chromium: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Embedded model on ARC-Easy: 3 prompt variants x {0, 5} shots (a few items; the 300-item
    run is recorded in docs/compare.md), then compare --json and the HTML report in Chromium."""
    task = ROOT / "tests" / "tasks" / "arc_easy"
    assert cli("run", "--db", db_path, "--task", task, "--data-dir", shared_data, "--shots", "0", "5", "--limit", "6", "--quiet") == 0
    capsys.readouterr()
    assert cli("compare", "--db", db_path, "--json", "--full") == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert len(data["cells"]) == 6 and {c["prompt"] for c in data["cells"]} == {"lm_eval", "lettered", "science_teacher"}
    assert all(c["n"] == 6 and 0 <= c["ci_low"] <= c["mean"] <= c["ci_high"] <= 1 for c in data["cells"])
    assert all(c["p_adjusted"] is not None for c in data["cells"][1:]) and data["cells"][0]["may_be_best"]
    assert data["cells"][0]["verdict"] == "best" and {c["verdict"] for c in data["cells"][1:]} <= {"worse", "inconclusive"}
    assert all("MDE" in c["verdict_detail"] for c in data["cells"] if c["verdict"] == "inconclusive")
    assert {(s["shots"], s["n_variants"]) for s in data["spread"]} == {(0, 3), (5, 3)}
    assert len(data["rank_stability"]) == 1  # 0-shot vs 5-shot order of the three variants
    report = tmp_path / "arc.html"
    assert cli("report", "--db", db_path, "-o", report) == 0
    dom = check_report(chromium, report, tmp_path, cells=6)
    assert "arc_easy_example" in dom and "science_teacher" in dom
    assert len(Store(db_path).runs()) == 1
