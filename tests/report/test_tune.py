"""Tuning curves in the report: a real (tiny-model) tuning card, rendered by `harness report` (the tuning section of
the viewer's pages, as one file: Vega-Lite specs rendered to SVG) and opened in headless Chromium. The SVG's marks carry
their data in aria-labels (Vega's), which the checks read to place each point, bar and marker on the step axis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report.plots import EVAL_COLOUR, LOSS_COLOUR, tuning_plots
from harness.tune.card import load_card
from tests.browser import LOADS, browse, has_colour, read_png
from tests.helpers import cli


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory, tiny_gemma: Path) -> Path:
    """A LoRA run that stops early (learning rate 0, patience 2): loss at steps 1-3, evals at 0-3, best 1, stop 3 of 12."""
    out = tmp_path_factory.mktemp("tuned") / "adapter"
    assert cli("tune", "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", out, "--steps", "12",
               "--eval-steps", "1", "--batch-size", "2", "--lr", "0", "--patience", "2", "--eval-limit", "4", "--quiet") == 0
    return out


def _figure(dom: str, name: str) -> str:
    (figure,) = re.findall(rf'<figure class="plot" data-plot="{name}">(.*?)</figure>', dom, re.S)
    return figure


def _marks(svg: str, kind: str) -> list[tuple[str, float, float]]:
    """(aria-label, x, y) of every mark of ``kind`` (point, rule mark, ...) in the plot's SVG."""
    found = re.findall(rf'<(?:path|line) aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="{kind}" '
                       r'transform="translate\(([-\d.e]+),([-\d.e]+)\)"', svg)
    return [(label, float(x), float(y)) for label, x, y in found]


def test_tuning_report_alone_draws_both_curves_and_marks_best_and_stop(stopped_run: Path, tmp_path: Path, chromium: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    card = json.loads((stopped_run / "tune_card.json").read_text())
    assert card["stopped_early"] and card["best_step"] == 1 and card["steps"] == 3
    report = tmp_path / "tune.html"
    assert cli("report", "--tune", stopped_run, "-o", report) == 0
    assert "tuning curves of 1 run(s)" in capsys.readouterr().out
    assert not re.search(LOADS, report.read_text()), "the report must not load anything"
    dom = browse(chromium, report, tmp_path, "--dump-dom").stdout
    assert "stopped early at step 3 of 12" in dom and "train holdout: 4 of 40 items, seed 1234" in dom
    loss, evals = _figure(dom, "tune-loss"), _figure(dom, "tune-eval")
    loss_points = [m for m in _marks(loss, "point") if m[0].startswith("optimiser step")]
    eval_points = [m for m in _marks(evals, "point") if m[0].startswith("optimiser step")]
    assert len(loss_points) == len(card["train_loss"]) == 3 and len(eval_points) == len(card["eval_curve"]) == 4
    assert [x for _, x, _ in eval_points] == sorted(x for _, x, _ in eval_points) and len({y for *_, y in eval_points}) == 1  # lr 0: flat
    x_of = {int(re.search(r"step: (\d+)", label).group(1)): x for label, x, _ in eval_points}  # type: ignore[union-attr]
    assert abs(x_of[3] - 3 / 12 * (x_of[1] - x_of[0]) * 12) < 0.01  # one linear step axis from 0 to the configured 12
    markers = {what: x for label, x, _ in _marks(evals, "rule mark") for what in ("best 1 (kept)", "early stop 3") if f"what: {what}" in label}
    assert markers == {"best 1 (kept)": x_of[1], "early stop 3": x_of[3]}  # on the step-1 evaluation; on the last step run
    bars = [m for m in _marks(evals, "rule mark") if "high:" in m[0]]  # every evaluation's 95% CI, at its step
    assert sorted(x for _, x, _ in bars) == sorted(x_of.values())
    for point in card["eval_curve"]:
        assert point["n"] == 4 and point["ci_low"] <= point["acc"] <= point["ci_high"] and point["ci_high"] > point["ci_low"]
    spec = tuning_plots(load_card(stopped_run))[1].spec  # type: ignore[arg-type]
    values = spec["data"]["values"]
    assert [(v["low"], v["high"]) for v in values] == [(p["ci_low"], p["ci_high"]) for p in card["eval_curve"]]
    assert "n = 4 items" in " ".join(spec["title"]["subtitle"]) and "mark-area role-mark" in evals  # the CI band
    shot = tmp_path / "shot.png"
    browse(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1400,1200")
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
    assert dom.count('<table class="ranked"') == 1 and dom.count('data-plot="tune-loss"') == 1
    assert "Tuning card — adapter" in dom and len([m for m in _marks(_figure(dom, "tune-loss"), "point") if m[0].startswith("optimiser")]) == 3
    # a comparison of runs without a tuned model gains no curves
    assert cli("run", "--db", db_path, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "--limit", "4",
               "--new", "--quiet") == 0
    capsys.readouterr()
    assert cli("report", "--db", db_path, "-o", report) == 0
    capsys.readouterr()
    assert "tune-loss" not in report.read_text() and "Tuning card" not in report.read_text()


def test_report_tune_on_a_folder_without_a_card_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", "--tune", tmp_path, "-o", tmp_path / "r.html") == 2
    assert "holds no tune_card.json" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
