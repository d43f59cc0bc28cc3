"""``harness run --until-decided`` on the embedded model: ARC-Easy from ../shared/data, 40 sampled items, two prompts (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.compare import compare_runs
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec, RaceSpec
from harness.stats.racing import seeded_order
from harness.store.store import Store

pytestmark = pytest.mark.slow


def test_race_then_the_full_run_from_the_cache(tmp_path: Path, shared_data: Path, embedded_model: Path) -> None:
    fields = {"tasks": ["arc_easy"], "prompts": ["lm_eval", "lettered"], "shots": [0], "sample": 40, "data_dirs": [str(shared_data)]}
    store = Store(tmp_path / "harness.db")
    raced = run_experiment(ExperimentSpec.model_validate({**fields, "race": RaceSpec(round=10)}), store, show_progress=False)
    (race,) = store.races([raced.run_id])
    assert race.population == 40 and race.rounds >= 1 and race.reason in ("winner", "exhausted")
    order = [int(p) for p in seeded_order(40, 1234)]
    for cell in race.cells:
        positions = sorted(row.position for row in store.items([raced.run_id], cell.cell_id))
        assert positions == sorted(order[: cell.items])
    full = run_experiment(ExperimentSpec.model_validate(fields), store, show_progress=False)
    assert full.backend_requests <= full.requests - race.requests
    (ranking,) = compare_runs(store, [full.run_id]).rankings
    if race.reason == "winner":  # the race's winner is the full run's best on the 40 items
        winner = next(c.cell_id for c in race.cells if c.status == "winner")
        assert ranking.cells[0].summary.cell.cell_id == winner
