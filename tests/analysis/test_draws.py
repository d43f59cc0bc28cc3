"""--draws: independent demonstration draws per few-shot cell, summarised over draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.analysis.draws import DrawSummary, draw_summaries, split_selector
from harness.backends import ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.fewshot.selectors import draw_rng, item_rng
from harness.runner.execute import run_experiment
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import cli, write_task


def _spec(folder: Path, **extra: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"tasks": [str(folder)], "shots": [0, 3], "selectors": ["random", "first_k"],
                                          "models": ["scripted:m"], **extra})


def test_draw_zero_is_the_plain_run_and_later_draws_differ(tmp_path: Path) -> None:
    folder = write_task(tmp_path, rows=10, fewshot_rows=20)
    assert draw_rng(3, "x", 0).random() == item_rng(3, "x").random()
    plain, drawn = plan(_spec(folder)), plan(_spec(folder, draws=4))
    assert {c.cell_id for c in plain} < {c.cell_id for c in drawn}  # draw 0 keeps its ids
    assert len(drawn) == 1 + 2 * 4  # zero-shot is not drawn
    store = Store(tmp_path / "r.db")
    backend = ScriptedBackend(ModelSpec(backend="scripted", model="m"))
    run = run_experiment(_spec(folder, draws=4), store, show_progress=False, backends={"scripted:m": backend}).run_id
    cells = {c.cell_id: c for c in store.cells([run])}
    demos: dict[tuple[str, int], list[list[str]]] = {}
    for row in store.items([run]):
        cell = cells[row.cell_id]
        if cell.shots:
            demos.setdefault(split_selector(cell.selector), []).append(row.demo_ids)
    assert sorted(demos) == [(s, d) for s in ("first_k", "random") for d in range(4)]
    assert len({json.dumps(demos[("random", d)]) for d in range(4)}) == 4  # each draw its own demonstrations
    assert len({json.dumps(demos[("first_k", d)]) for d in range(4)}) == 1  # a fixed selector does not vary
    again = run_experiment(_spec(folder, draws=4), store, new=True, show_progress=False, backends={"scripted:m": backend}).run_id
    assert [r.demo_ids for r in store.items([again])] == [r.demo_ids for r in store.items([run])]

    (random_row,) = [s for s in draw_summaries(store, [run]) if s.selector == "random"]
    assert random_row.shots == 3 and len(random_row.draw_means) == 4 and random_row.n_items == 10 and random_row.metric == "acc"


def test_summary_statistics_over_draws() -> None:
    means = (0.5, 0.6, 0.8, 0.7)
    row = DrawSummary("t", "p", 4, "random", "m", "acc", means, 100)
    assert row.mean == pytest.approx(0.65) and row.sd == pytest.approx(np.std(means, ddof=1))
    low, high = row.interval()
    expected = stats.t.interval(0.95, 3, loc=np.mean(means), scale=stats.sem(means))
    assert (low, high) == pytest.approx(expected)
    assert row.to_json()["min"] == 0.5 and row.to_json()["max"] == 0.8
    assert split_selector("knn_similar_last draw 12") == ("knn_similar_last", 12) and split_selector("random") == ("random", 0)


def test_cli_run_with_draws_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_task(tmp_path, rows=6, fewshot_rows=12)
    db = tmp_path / "c.db"
    assert cli("run", "--task", folder, "--shots", "2", "--selector", "random", "--draws", "3", "--model", "scripted:m", "--db", db, "--quiet") == 0
    capsys.readouterr()
    assert cli("draws", "--db", db, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["draws"] == 3 and row["selector"] == "random" and row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_a_single_draw_has_no_interval_or_spread() -> None:
    row = DrawSummary("t", "p", 4, "random", "m", "acc", (0.7,), 50)
    assert row.mean == 0.7 and row.interval() is None  # not the zero-width (0.7, 0.7)
    data = json.loads(json.dumps(row.to_json(), allow_nan=False))
    assert data["ci_low"] is None and data["ci_high"] is None and data["sd"] is None and data["draws"] == 1
    assert data["min"] == data["max"] == 0.7


def test_cli_draws_with_one_draw_prints_no_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_task(tmp_path, rows=6, fewshot_rows=12)
    db = tmp_path / "one.db"
    assert cli("run", "--task", folder, "--shots", "2", "--selector", "random", "--model", "scripted:m", "--db", db, "--quiet") == 0
    capsys.readouterr()
    assert cli("draws", "--db", db, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["draws"] == 1 and row["ci_low"] is None and row["ci_high"] is None and row["sd"] is None
    assert cli("draws", "--db", db) == 0
    out = " ".join(capsys.readouterr().out.split())
    mean = f"{row['mean']:.3f}"
    assert "1 draw: no CI over draws" in out and f"{mean} [{mean}, {mean}]" not in out and "—" in out
