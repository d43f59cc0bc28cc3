"""ARC-Easy from ../shared/data on the embedded model: 200 items, zero- and 5-shot (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store

pytestmark = pytest.mark.slow
TASK = Path(__file__).resolve().parents[1] / "tasks" / "arc_easy"


def test_arc_easy_zero_and_five_shot_well_above_chance(tmp_path: Path, shared_data: Path, embedded_model: Path) -> None:
    spec = ExperimentSpec(tasks=[str(TASK)], prompts=["lm_eval"], shots=[0, 5], selectors=["first_k"], limit=200,
                          data_dirs=[str(shared_data)])
    store = Store(tmp_path / "harness.db")
    summary = run_experiment(spec, store, show_progress=False)
    rows = store.items([summary.run_id])
    assert len(rows) == 400
    by_shots: dict[int, list[float]] = {0: [], 5: []}
    cells = {c.cell_id: c for c in store.cells([summary.run_id])}
    for row in rows:
        by_shots[cells[row.cell_id].shots].append(row.scores["acc"])
        assert len(row.demo_ids) == cells[row.cell_id].shots
    accuracy = {k: sum(v) / len(v) for k, v in by_shots.items()}
    print(f"ARC-Easy acc on 200 items: {accuracy}")
    # chance is ~25% (a few items have 3 or 5 choices); the 270M base model is far above it
    assert accuracy[0] > 0.40 and accuracy[5] > 0.40, accuracy
