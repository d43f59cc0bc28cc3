"""The Vega-Lite specs of a comparison (harness/report/plots.py): their data are the comparison's own
numbers for a real stored run (cell CIs, paired differences, adjusted p, verdicts, spreads), their
colours the verdicts the page's table and sentence state, and one renders to a static SVG with
vl-convert holding its axis titles and marks."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.compare import Comparison, TaskRanking, compare_runs, setting_labels
from harness.report.plots import STATIC_WIDTH, VERDICT_COLOURS, Plot, difference_plot, heatmap, render_svg, score_plot, spread_plot
from harness.store import Store
from harness.view.pages import task_views
from tests.decide_support import toy_task
from tests.helpers import cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The toy task (2 prompts x 2 shot counts x 2 models, 60 items) as the viewer's tests store it."""
    root = tmp_path_factory.mktemp("plots")
    toy_task(root / "tasks", rows=60)
    db = root / "harness.db"
    assert cli("run", "--db", db, "--tasks-dir", root / "tasks", "--task", "toy", "--shots", "0", "2",
               "--model", "skilled:0.85", "--model", "skilled:0.35", "--quiet") == 0
    opened = Store.open_read_only(db)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def comp(store: Store) -> Comparison:
    return compare_runs(store, [store.resolve_run("latest")], margin=0.02)


def _ranking(comp: Comparison) -> TaskRanking:
    (ranking,) = comp.rankings
    return ranking


def _layer_data(plot: Plot) -> list[dict[str, Any]]:
    return list(plot.spec["data"]["values"])


def test_score_plot_holds_each_cells_interval_and_verdict(comp: Comparison) -> None:
    ranking = _ranking(comp)
    rows = _layer_data(score_plot(comp, ranking))
    assert [r["cell_id"] for r in rows] == [rc.summary.cell.cell_id for rc in ranking.cells]  # best first, as ranked
    for row, rc in zip(rows, ranking.cells):
        ci = rc.summary.interval
        assert (row["mean"], row["ci_low"], row["ci_high"], row["n"]) == (ci.mean, ci.low, ci.high, rc.summary.n)
        assert (row["verdict"], row["verdict_text"], row["rank"]) == (rc.verdict.code, rc.verdict.text, rc.rank)


def test_difference_plot_holds_each_pairs_difference_and_adjusted_p(comp: Comparison) -> None:
    ranking = _ranking(comp)
    plot = difference_plot(comp, ranking)
    assert plot is not None
    rows = _layer_data(plot)
    others = ranking.cells[1:]
    assert [r["cell_id"] for r in rows] == [rc.summary.cell.cell_id for rc in others]
    for row, rc in zip(rows, others):
        assert rc.vs_best is not None
        d = rc.vs_best.diff
        assert (row["diff"], row["diff_low"], row["diff_high"], row["p_adjusted"]) == (d.mean, d.low, d.high, rc.p_adjusted)
    # the equivalence margin the comparison was run with is the shaded band
    band = [layer for layer in plot.spec["layer"] if layer["mark"]["type"] == "rect"]
    assert band and band[0]["data"]["values"] == [{"low": -ranking.margin, "high": ranking.margin}]  # type: ignore[operator]


def test_the_colours_are_the_verdicts_of_the_table_and_the_sentence(comp: Comparison) -> None:
    ranking = _ranking(comp)
    (view,) = task_views(comp)
    for plot in (score_plot(comp, ranking), difference_plot(comp, ranking)):
        assert plot is not None
        layers = [plot.spec["encoding"]] if "encoding" in plot.spec and "color" in plot.spec["encoding"] else [
            layer["encoding"] for layer in plot.spec["layer"] if "color" in layer.get("encoding", {})]
        for encoding in layers:
            scale = encoding["color"]["scale"]
            colour = dict(zip(scale["domain"], scale["range"]))
            for row in _layer_data(plot):
                assert colour[row["verdict_text"]] == VERDICT_COLOURS[row["verdict"]]
        table = {r.cell_id: r.verdict_code for r in view.rows}
        assert {r["cell_id"]: r["verdict"] for r in _layer_data(plot)}.items() <= table.items()
    worse = [r for r in view.rows if r.verdict_code == "worse"]
    assert worse and " worse, by " in view.sentence  # this run has worse cells: red bars, and the sentence says so
    assert {"best", "inconclusive", "worse"} <= {r["verdict"] for r in _layer_data(score_plot(comp, ranking))}


def test_each_plot_says_its_intervals_are_not_adjusted_and_what_the_verdict_rests_on(comp: Comparison) -> None:
    ranking = _ranking(comp)
    pairs = len(ranking.cells) * (len(ranking.cells) - 1) // 2
    for plot in (score_plot(comp, ranking), difference_plot(comp, ranking)):
        assert plot is not None
        subtitle = " ".join(plot.spec["title"]["subtitle"])
        assert "not adjusted for multiplicity" in subtitle
        assert f"p adjusted over all {pairs} pairs (step-down max-T)" in subtitle
    # an inconclusive cell whose own CI is clear of 0 (the pair alone differs): the plot says why it is not worse
    clear = [rc for rc in ranking.cells[1:] if rc.verdict.code == "inconclusive" and rc.vs_best is not None
             and (rc.vs_best.diff.high < 0 or rc.vs_best.diff.low > 0)]
    assert clear, "the toy run has such a cell (its 2-shot plain prompt on the strong model)"
    diff = difference_plot(comp, ranking)
    assert diff is not None
    assert f"{len(clear)} bar{' is' if len(clear) == 1 else 's are'} clear of 0 yet not worse" in " ".join(diff.spec["title"]["subtitle"])


def test_heatmap_holds_every_cells_score_with_a_legend_titled_by_the_metric(comp: Comparison) -> None:
    ranking = _ranking(comp)
    plot = heatmap(comp, ranking)
    labels = setting_labels([rc.summary for rc in ranking.cells])
    expected = {(rc.summary.cell.prompt, labels[(rc.summary.cell.run_id, rc.summary.cell.cell_id)]): rc.summary.interval.mean
                for rc in ranking.cells}
    assert {(r["prompt"], r["setting"]): r["mean"] for r in _layer_data(plot)} == expected
    assert len(expected) == 8
    (colour,) = [layer["encoding"]["color"] for layer in plot.spec["layer"] if layer["mark"]["type"] == "rect"]
    assert colour["field"] == "mean" and colour["legend"]["title"] == f"{ranking.metric} (%)"


def test_spread_plot_holds_the_comparisons_spreads(comp: Comparison) -> None:
    ranking = _ranking(comp)
    plot = spread_plot(comp, ranking)
    assert plot is not None
    bars = plot.spec["layer"][0]["data"]["values"]
    spreads = [sp for sp in comp.spreads if sp.task == ranking.task]
    assert len(spreads) == 4
    assert sorted((b["setting"], b["min"], b["median"], b["max"], b["variants"]) for b in bars) == sorted(
        (sp.setting, sp.min, sp.median, sp.max, sp.n_variants) for sp in spreads)
    dots = plot.spec["layer"][2]["data"]["values"]
    assert sorted(d["mean"] for d in dots) == sorted(rc.summary.interval.mean for rc in ranking.cells)


def test_a_spec_renders_to_static_svg_with_its_axis_titles_and_marks(comp: Comparison, tmp_path: Path) -> None:
    ranking = _ranking(comp)
    plot = score_plot(comp, ranking)
    assert plot.spec["width"] == "container"  # drawn to the page's column; on its own it gets STATIC_WIDTH px
    svg = render_svg(plot.spec)
    assert svg.lstrip().startswith("<svg") and f'width="{STATIC_WIDTH}"' in svg.split(">", 1)[0]
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "acc (%), 95% CI" in texts and "cell (best first)" in texts and "verdict vs the best" in texts
    assert any(t.startswith("1. ") for t in texts)  # the cells' names on the y axis
    assert svg.count('class="mark-rule role-mark') == 1 and svg.count('class="mark-symbol role-mark') == 1
    assert svg.count("<path") >= 2 * len(ranking.cells)  # a bar and a dot per cell
    assert VERDICT_COLOURS["worse"] in svg and VERDICT_COLOURS["best"] in svg


def test_a_process_forked_after_vl_convert_started_still_renders(tmp_path: Path) -> None:
    """vl-convert's runtime runs on worker threads a fork does not copy: in a child forked after the parent rendered, a
    render waited forever (the hostile-input corpus forks a child per case; ``harness report`` there hung). The child
    now renders in a fresh Python, and gets the same SVG."""
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v6.json", "data": {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 3}]},
            "mark": "point", "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}},
            "width": 200, "height": 100}
    here = render_svg(spec)
    out = tmp_path / "child.svg"
    pid = os.fork()
    if pid == 0:  # the child: render, write, leave without running the parent's atexit or pytest's teardown
        try:
            out.write_text(render_svg(spec))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("rendering in a forked child hung")
    assert out.read_text() == here
