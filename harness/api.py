"""The Python API for notebooks and scripts: stored items as a DataFrame, comparisons as data.

import harness
df = harness.load_results("results/harness.db", run="latest")
comp = harness.compare("results/harness.db", runs=["latest"])
comp.rows()   # or pandas.DataFrame(comp.rows())
summary = harness.run({"tasks": ["capitals"], "shots": [0, 3], "limit": 50})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.analysis.compare import Comparison, compare_runs
from harness.core.yamlfile import read_yaml_mapping, validate
from harness.runner.execute import RunSummary, run_experiment
from harness.runner.spec import ExperimentSpec
from harness.stats.basics import DEFAULT_RESAMPLES
from harness.store import DEFAULT_DB, Store, item_row


def _runs(store: Store, run: str | Sequence[str] | None) -> list[str]:
    refs = ["latest"] if run is None else [run] if isinstance(run, str) else list(run)
    return [store.resolve_run(r) for r in refs]


def load_results(db: str | Path = DEFAULT_DB, run: str | Sequence[str] | None = "latest") -> Any:
    """One row per stored item: its cell's fields, prompt, answer, target and one column per metric.

    ``run`` is a run id, a unique prefix, 'latest', or a list of those.
    """
    import pandas as pd

    store = Store(db)
    try:
        runs = _runs(store, run)
        cells = {(c.run_id, c.cell_id): c for c in store.cells(runs)}
        records = [item_row(item, cells[(item.run_id, item.cell_id)], score_columns=True) for item in store.items(runs)]
        return pd.DataFrame.from_records(records)
    finally:
        store.close()


def compare(
    db: str | Path = DEFAULT_DB, runs: str | Sequence[str] | None = "latest", metric: str | None = None, *,
    alpha: float = 0.05, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
    margin: float | None = None, unscorable: str = "wrong",
) -> Comparison:
    """Ranked cells with CIs, the possibly-best set and a verdict per cell, prompt spread and rank stability."""
    store = Store(db)
    try:
        return compare_runs(store, _runs(store, runs), metric, alpha=alpha, confidence=confidence, resamples=resamples, seed=seed,
                            margin=margin, unscorable=unscorable)  # type: ignore[arg-type]
    finally:
        store.close()


def run(
    experiment: ExperimentSpec | dict[str, Any] | str | Path, db: str | Path = DEFAULT_DB, *, new: bool = False,
    show_progress: bool = False,
) -> RunSummary:
    """Evaluate an experiment (an ExperimentSpec, a mapping of its fields, or an experiment YAML file), resuming an
    identical unfinished run unless ``new``; the summary names the run for ``load_results`` and ``compare``."""
    if isinstance(experiment, (str, Path)):
        path = Path(experiment)
        spec = validate(ExperimentSpec, read_yaml_mapping(path, "experiment"), path, "experiment")
    elif isinstance(experiment, dict):
        spec = validate(ExperimentSpec, experiment, "experiment", "experiment")
    else:
        spec = experiment
    store = Store(db)
    try:
        return run_experiment(spec, store, new=new, show_progress=show_progress)
    finally:
        store.close()
