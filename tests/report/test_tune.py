"""Tuning curves in the HTML report: a real (tiny-model) tuning card, rendered by `harness report`
and opened in headless Chromium with tests/report/test_html.py's helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report.tune import EVAL_COLOUR, LOSS_COLOUR
from tests.browser import browse, has_colour, read_png
from tests.helpers import cli


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory, tiny_gemma: Path) -> Path:
    """A LoRA run that stops early (learning rate 0, patience 2): loss at steps 1-3, evals at 0-3, best 1, stop 3 of 12."""
    out = tmp_path_factory.mktemp("tuned") / "adapter"
    assert cli("tune", "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", out, "--steps", "12",
               "--eval-steps", "1", "--batch-size", "2", "--lr", "0", "--patience", "2", "--eval-limit", "4", "--quiet") == 0
    return out


def _error_bars(dom: str) -> list[tuple[float, float, float]]:
    """(x, y of the lower bound, y of the upper bound) of every CI error bar of the selection curve."""
    bars = re.findall(r'<g class="eval-curve-ci"><line x1="([\d.]+)" y1="([\d.]+)" x2="[\d.]+" y2="([\d.]+)"', dom)
    return [(float(x), float(low), float(high)) for x, low, high in bars]


def _points(dom: str, css_class: str) -> list[tuple[float, float]]:
    (coords,) = re.findall(rf'<polyline class="{css_class}" points="([^"]*)"', dom)
    return [(float(x), float(y)) for x, y in (p.split(",") for p in coords.split())]


def test_tuning_report_alone_draws_both_curves_and_marks_best_and_stop(stopped_run: Path, tmp_path: Path, chromium: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    card = json.loads((stopped_run / "tune_card.json").read_text())
    assert card["stopped_early"] and card["best_step"] == 1 and card["steps"] == 3
    report = tmp_path / "tune.html"
    assert cli("report", "--tune", stopped_run, "-o", report) == 0
    assert "tuning curves of 1 run(s)" in capsys.readouterr().out
    source = report.read_text()
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", source), "the report must not load anything"
    dom = browse(chromium, report, tmp_path, "--dump-dom").stdout
    assert dom.count('<svg class="tune-curves"') == 1 and "stopped early at step 3 of 12" in dom
    loss, evals = _points(dom, "train-loss"), _points(dom, "eval-curve")
    assert len(loss) == len(card["train_loss"]) == 3 and len(evals) == len(card["eval_curve"]) == 4
    assert dom.count('class="eval-curve-point"') == 4 and dom.count('class="train-loss-point"') == 3
    assert [x for x, _ in loss] == sorted(x for x, _ in loss) and len({y for _, y in evals}) == 1  # lr 0: a flat eval curve
    best = re.search(r'<line class="best-step" x1="([\d.]+)"', dom)
    stop = re.search(r'<line class="stop-step" x1="([\d.]+)"', dom)
    assert best and stop
    assert float(best.group(1)) == evals[1][0]  # the best-step marker sits on the step-1 evaluation
    assert float(stop.group(1)) == evals[3][0] == loss[2][0]  # the stop marker on the last step run
    assert float(stop.group(1)) < 0.5 * 760  # step 3 of 12 is in the left third of the step axis
    # every evaluation has its 95% CI as an error bar at its step, bracketing the point, on the same value -> y scale
    bars = _error_bars(dom)
    assert len(bars) == len(evals) == 4 and [b[0] for b in bars] == [x for x, _ in evals]
    for (x, y), (_, y_low, y_high), point in zip(evals, bars, card["eval_curve"]):
        assert point["n"] == 4 and point["ci_low"] <= point["acc"] <= point["ci_high"] and point["ci_high"] > point["ci_low"]
        assert y_low >= y >= y_high and y_low > y_high  # SVG y grows downwards
        slope = (y_low - y_high) / (point["ci_high"] - point["ci_low"])
        assert abs(y_low - slope * (point["acc"] - point["ci_low"]) - y) < 0.25
    assert dom.count('class="eval-curve-band"') == 1
    assert "95% CI" in dom and "n = 4" in dom and "train holdout: 4 of 40 items, seed 1234" in dom
    assert "selection acc, 95% CI (n = 4 items per evaluation)" in dom
    shot = tmp_path / "shot.png"
    browse(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=900,900")
    image = read_png(shot)
    assert image.std() > 10 and has_colour(image, LOSS_COLOUR) and has_colour(image, EVAL_COLOUR)


def test_report_on_an_ab_run_appends_the_adapters_curves(stopped_run: Path, tiny_gemma: Path, tmp_path: Path, db_path: Path,
                                                         chromium: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("ab", "--db", db_path, "--base", f"hf:{tiny_gemma}", "--adapter", stopped_run, "--task", "capitals",
               "--prompt", "qa_plain", "--limit", "4", "--quiet", "--json") == 0
    capsys.readouterr()
    report = tmp_path / "ab.html"
    assert cli("report", "--db", db_path, "-o", report) == 0
    assert "tuning curves of 1 run(s)" in capsys.readouterr().out
    dom = browse(chromium, report, tmp_path, "--dump-dom").stdout
    assert dom.count('<table class="ranked"') == 1 and dom.count('<svg class="tune-curves"') == 1
    assert "Tuning curves — adapter" in dom and len(_points(dom, "train-loss")) == 3
    # a comparison of runs without a tuned model gains no curves
    assert cli("run", "--db", db_path, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "--limit", "4",
               "--new", "--quiet") == 0
    capsys.readouterr()
    assert cli("report", "--db", db_path, "-o", report) == 0
    assert "tuning curves" not in capsys.readouterr().out and "tune-curves" not in report.read_text()


def test_report_tune_on_a_folder_without_a_card_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", "--tune", tmp_path, "-o", tmp_path / "r.html") == 2
    assert "holds no tune_card.json" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
