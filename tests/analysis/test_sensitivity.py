"""The sensitivity report on synthetic stored runs (scripted backends): factor attribution
from cell labels, known ranges, pooled-over-draws CIs, paired tests, terminal/JSON/HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.draws import draw_summaries
from harness.analysis.sensitivity import FACTORS, analyse, parse_cell
from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.store import Store, StoredCell
from tests.browser import LOADS, browse, has_colour, read_png
from tests.decide_support import toy_task, unit
from tests.helpers import cli


class FormatSensitive(ScriptedBackend):
    """Right on every item when the prompt ends in the original 'A:', wrong otherwise; and
    right on a demonstration-dependent ~half of the items when the prompt is 'polite'."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        text = prompt_text(request.context)
        found = re.findall(r"t question (\d+)\?", text)  # whatever the field name's format; none: a content-free input
        index = int(found[-1]) if found else 0
        correct = " " + [f"yes {index}", f"no {index}", "maybe"][index % 3]
        right = text.endswith("\nA:") and ("Answer the question." not in text or unit(text) < 0.5)
        value = (-1.0 if right else -6.0) if request.continuation == correct else -3.0 - unit(request.continuation)
        return LoglikelihoodResult(logprob=value, is_greedy=False, n_tokens=1)


if "fmtsens" not in BACKENDS:
    BACKENDS.add("fmtsens", lambda: FormatSensitive)


def _cell(prompt: str, selector: str) -> StoredCell:
    return StoredCell("r", "c", "t", "multiple_choice", prompt, "", 4, selector, "m", {}, ["acc"], 1)


def test_factor_values_come_from_cell_labels() -> None:
    s = parse_cell(_cell("lm_eval__fmt3", "knn_similar_last draw 2"))
    assert (s.template, s.format, s.selector, s.order, s.draw, s.calibration) == ("lm_eval", 3, "knn", "similar_last", 2, "uncalibrated")
    s = parse_cell(_cell("my__fmt_x", "random"))
    assert (s.template, s.format, s.selector, s.order, s.draw) == ("my__fmt_x", -1, "random", "selected", 0)
    assert parse_cell(_cell("p", "mmr_label_alternating")).order == "label_alternating"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """Two runs of the toy task: selectors x 3 draws (both prompts, calibrated), and 4 formats."""
    root = tmp_path_factory.mktemp("sens")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_EMBEDDINGS", "tfidf")
    folder = toy_task(root / "tasks", rows=30)
    db = root / "s.db"
    common = ["--db", db, "--task", folder, "--shots", "2", "--model", "fmtsens:x", "--quiet", "--json"]
    assert cli("run", *common, "--selector", "random", "balanced", "knn", "knn_shuffled", "--draws", "3") == 0
    assert cli("calibrate", "--db", db, "--content-free", "N/A") == 0
    assert cli("formats", folder, "--prompt", "plain", "-k", "4", "--seed", "1", "-o", root / "fmts") == 0
    assert cli("run", *common, "--prompts-dir", root / "fmts", "--prompt", *[f"plain__fmt{i}" for i in range(4)], "--selector", "random") == 0
    mp.undo()
    store = Store(db)
    run_ids = [r.id for r in store.runs()]
    store.close()
    return db, run_ids, root


def test_slices_ranges_and_tests(runs: tuple[Path, list[str], Path]) -> None:
    db, run_ids, root = runs
    store = Store(db)
    result = analyse(store, run_ids, resamples=500)
    assert {s.factor for s in result.slices} == set(FACTORS)
    # format: the original 'A:' scores 1.0, re-cased/re-separated answers score 0 (known answer)
    (fmt,) = [s for s in result.slices if s.factor == "format" and "calibrated" not in s.context]
    expected = {f"fmt{i}": float((root / "fmts" / "toy" / f"plain__fmt{i}.jinja").read_text().endswith("\nA:")) for i in range(4)}
    assert {lv.name: lv.mean for lv in fmt.levels} == expected and fmt.range == 1.0
    assert all(lv.interval.method == "wilson" and lv.draws == 1 for lv in fmt.levels)
    # selector levels pool 3 draws: mean of the draw means, t CI over draws, as `harness draws` reports
    draws = {(d.prompt, d.selector): d for d in draw_summaries(store, [run_ids[0]])}
    (sel,) = [s for s in result.slices if s.factor == "selector" and s.context == "toy · fmtsens:x · 2-shot · polite"]
    assert [lv.name for lv in sel.levels] == ["balanced", "knn", "random"]
    for lv in sel.levels:
        d = draws[("polite", lv.name)]
        assert lv.draws == 3 and np.isclose(lv.mean, d.mean)
        if lv.name == "knn":  # deterministic: three copies of one draw, so the CI is over items (Wilson), not degenerate
            assert d.sd == 0 and lv.interval.method == "wilson" and lv.interval.low < lv.mean < lv.interval.high
        else:
            assert lv.interval.method == "t over 3 draws" and np.allclose((lv.interval.low, lv.interval.high), d.interval())
    # draw slices: one per setting, the draws' cells, and the t CI over draws
    random_draws = [s for s in result.slices if s.factor == "draw" and s.context == "toy · fmtsens:x · 2-shot · polite · random"]
    assert len(random_draws) == 1 and [lv.name for lv in random_draws[0].levels] == ["draw 0", "draw 1", "draw 2"]
    assert random_draws[0].over_draws is not None and np.isclose(random_draws[0].over_draws.mean, draws[("polite", "random")].mean)
    # knn repeats one draw: its draw slice says so and carries no (degenerate, zero-width) t CI
    identical = [s for s in result.slices if s.factor == "draw" and "identical draws" in s.context]
    assert "toy · fmtsens:x · 2-shot · polite · knn · identical draws (deterministic selector)" in [s.context for s in identical]
    assert all(s.over_draws is None and s.range == 0 for s in identical)
    assert "identical draws" not in random_draws[0].context
    # order: knn as selected vs shuffled; template: plain vs polite (the polite prompt loses about half)
    assert any(s.factor == "order" and [lv.name for lv in s.levels] == ["selected", "shuffled"] for s in result.slices)
    template = [s for s in result.slices if s.factor == "template" and s.context.endswith("2-shot · random")]
    assert len(template) == 1 and template[0].max.name == "plain" and template[0].max.mean == 1.0 and template[0].min.mean < 0.8
    # paired tests: every pair of selectors per selector slice (per-item means over draws: bootstrap-t), Holm within the factor
    selector_tests = [t for t in result.tests if t.factor == "selector"]
    selector_slices = [s for s in result.slices if s.factor == "selector"]
    assert len(selector_tests) == 3 * len(selector_slices)
    assert all(t.result.test.startswith("bootstrap-t") for t in selector_tests if "polite" in t.context and "knn" not in (t.a, t.b))
    assert all(t.result.test.startswith("tango") for t in selector_tests if "plain" in t.context)  # 1.0 everywhere: 0/1
    assert all(t.result.test.startswith("tango") for t in result.tests if t.factor == "calibration" and "knn" in t.context
               and "shuffled" not in t.context)  # 0/1 on both sides: Tango (McNemar at 0)
    assert all(t.p_holm >= t.result.p_value for t in selector_tests)
    calibration = [t for t in result.tests if t.factor == "calibration"]
    assert calibration and all((t.a, t.b) == ("uncalibrated", "calibrated") for t in calibration)
    assert {t.factor for t in result.tests} == {"selector", "calibration"}
    store.close()


def test_cli_json_terminal_html_in_chromium(runs: tuple[Path, list[str], Path], chromium: str, tmp_path: Path,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db, run_ids, _ = runs
    capsys.readouterr()
    assert cli("sensitivity", *run_ids, "--db", db, "--json", "--resamples", "300") == 0
    data = json.loads(capsys.readouterr().out)
    assert {f["factor"] for f in data["factors"]} == set(FACTORS) and data["paired_tests"]
    report = tmp_path / "sens.html"
    assert cli("sensitivity", *run_ids, "--db", db, "--html", report, "--resamples", "300") == 0
    out = capsys.readouterr().out
    assert "largest range" in out and "paired tests" in out and f"wrote {report}" in out
    source = report.read_text()
    assert not re.search(LOADS, source)  # the sensitivity page of harness view, as one file
    dom = browse(chromium, report, tmp_path, "--dump-dom").stdout
    assert dom.count("<section class=\"factor\"") == len(FACTORS)
    for factor in FACTORS:  # each factor's range plot, rendered to SVG with its marks
        (figure,) = re.findall(rf'<figure class="plot" data-plot="factor-{factor}">(.*?)</figure>', dom, re.S)
        assert "<svg" in figure and "mark-symbol role-mark" in figure and "mark-rule role-mark" in figure
    levels = sum(len(s["levels"]) for s in data["slices"])
    assert dom.count('<li class="level">') == levels
    assert len(re.findall(r"<table class=\"paired\"", dom)) == 2
    shot = tmp_path / "shot.png"
    browse(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1400,2400")
    image = read_png(shot)
    assert image.std() > 10 and has_colour(image, "#c6dbef") and has_colour(image, "#b2182b", at_least=10)


def test_nothing_varies_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = toy_task(tmp_path / "tasks", rows=5)
    db = tmp_path / "one.db"
    assert cli("run", "--db", db, "--task", folder, "--prompt", "plain", "--model", "fmtsens:x", "--quiet", "--json") == 0
    capsys.readouterr()
    assert cli("sensitivity", "--db", db) == 2
    assert "no factor varies" in capsys.readouterr().err


def test_pooled_levels_t_over_differing_draws_clipped_and_identical_draws_count_once() -> None:
    from harness.analysis.sensitivity import _level

    varied = _level("random", [{"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}], True, 0.95, 200, 0)
    assert varied.interval.method == "t over 3 draws" and np.isclose(varied.mean, 5 / 6) and varied.interval.high == 1.0
    assert varied.scores == {"a": 1.0, "b": 2 / 3} and 0 < varied.interval.low < varied.mean
    same = _level("knn", [{"a": 1.0, "b": 0.0}] * 3, True, 0.95, 200, 0)
    assert same.interval.method == "wilson" and same.mean == 0.5 and same.interval.n == 2


def test_t_over_one_draw_is_no_interval_and_renders_as_such() -> None:
    from harness.analysis.sensitivity import Level, Slice, _t_over_draws
    from harness.report.plots import factor_plot
    from harness.report.sensitivity import slice_row
    from harness.view.decide import sensitivity_view

    one = _t_over_draws((0.6,), True, 0.95, 10)
    assert one.mean == 0.6 and one.low != one.low and one.high != one.high  # NaN bounds, not the zero-width (0.6, 0.6)
    assert one.method == "1 draw: no CI over draws"
    two = _t_over_draws((0.6, 0.8), True, 0.95, 10)
    assert two.method == "t over 2 draws" and 0 <= two.low < 0.7 < two.high <= 1
    level = Level("draw 0", one, 1, {"a": 1.0})
    other = Level("draw 1", two, 1, {"a": 0.0})
    s = Slice("draw", "t", "t · m · 2-shot · p · random", "acc", True, (level, other), over_draws=one)
    data = json.loads(json.dumps(s.to_json(), allow_nan=False))  # valid JSON: None, not NaN
    assert data["over_draws"]["ci_low"] is None and data["levels"][0]["ci_high"] is None
    row = " ".join(slice_row(s))
    assert "1 draw: no CI over draws" in row and "60.0 [60.0, 60.0]" not in row and "[—, —]" not in row
    from harness.analysis.sensitivity import Sensitivity

    view = sensitivity_view(Sensitivity(["r"], [s], [], 0.95))  # the page's (and its export's) rows and plot
    (factor,) = view.factors
    assert factor.slices[0].levels[0].ci == "60.0 [—] (1 draw: no CI over draws)" and "60.0 [60.0, 60.0]" not in str(view)
    points = factor_plot("draw", [s], 0.95).spec["layer"][2]["data"]["values"]
    assert points[0]["low"] is None and points[0]["high"] is None and points[1]["low"] is not None  # no bar where there is no CI
