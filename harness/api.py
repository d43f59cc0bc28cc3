r"""The Python API for notebooks and scripts: stored items as a DataFrame, comparisons as data.

import harness
df = harness.load_results("results/harness.db", run="latest")
comp = harness.compare("results/harness.db", runs=["latest"])
comp.rows()   # or pandas.DataFrame(comp.rows())
summary = harness.run({"tasks": ["capitals"], "shots": [0, 3], "limit": 50})

Tasks as code, for those who want it: ``harness.Task(...)`` takes the fields of a task.yaml and
validates them with the same model (same errors, field by field), plus the prompt templates as
text; ``run`` saves it as a task folder (task.yaml + prompts/) beside the database and runs that,
so a Python task and a YAML task go through one code path and resume and cache alike::

    qa = harness.Task(name="my_qa", type="generate", data={"test": "data/qa.csv"}, input="{{ question }}",
                      target="{{ answer }}", metrics=["exact_match"], templates={"plain": "Q: {{ input }}\nA:"})
    harness.run({"tasks": [qa], "limit": 20})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.analysis.compare import Comparison, compare_runs
from harness.core.yamlfile import read_yaml_mapping, validate
from harness.runner.execute import RunSummary, run_experiment
from harness.runner.spec import ExperimentSpec
from harness.stats.basics import DEFAULT_RESAMPLES
from harness.store import DEFAULT_DB, Store, item_row
from harness.tasks.task import TaskSpec


class Task:
    """A task defined in Python: the fields of a task.yaml (validated as one) and its templates.

    ``templates`` maps a variant name to Jinja text (``"chatty.chat"`` for a chat template);
    ``prompts`` defaults to their names. Relative data paths are taken from the current folder
    when a file is there (else, as in a YAML, from the data dirs)."""

    def __init__(self, *, templates: dict[str, str] | None = None, **fields: Any) -> None:
        self.templates = dict(templates or {})
        fields.setdefault("prompts", [name.removesuffix(".chat") for name in self.templates])
        data = fields.get("data")
        if isinstance(data, dict):
            fields["data"] = {split: _from_here(value) for split, value in data.items()}
        self.spec = validate(TaskSpec, fields, f"harness.Task({fields.get('name', '?')!r})", "task")

    @property
    def name(self) -> str:
        return self.spec.name

    def save(self, folder: str | Path) -> Path:
        """Write it as a task folder (task.yaml and prompts/<name>.jinja), the form every run loads."""
        folder = Path(folder)
        (folder / "prompts").mkdir(parents=True, exist_ok=True)
        document = self.spec.model_dump(mode="json", exclude_defaults=True)
        (folder / "task.yaml").write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
        for name, text in self.templates.items():
            (folder / "prompts" / f"{name}.jinja").write_text(text, encoding="utf-8")
        return folder


def _from_here(value: Any) -> Any:
    if isinstance(value, str) and not Path(value).is_absolute() and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _saved_tasks(raw: dict[str, Any], db: Path) -> dict[str, Any]:
    """The experiment's ``Task`` objects saved beside the database (``<db folder>/tasks/<name>``), named by folder."""
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not any(isinstance(t, Task) for t in tasks):
        return raw
    named = [str(t.save(db.parent / "tasks" / t.name)) if isinstance(t, Task) else t for t in tasks]
    return {**raw, "tasks": named}


def _runs(store: Store, run: str | Sequence[str] | None) -> list[str]:
    refs = ["latest"] if run is None else [run] if isinstance(run, str) else list(run)
    return [store.resolve_run(r) for r in refs]


def load_results(db: str | Path = DEFAULT_DB, run: str | Sequence[str] | None = "latest") -> Any:
    """One row per stored item: its cell's fields, prompt, answer, target and one column per metric.

    ``run`` is a run id, a unique prefix, 'latest', or a list of those.
    """
    import pandas as pd

    store = Store.open_read_only(db)
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
    store = Store.open_read_only(db)
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
    identical unfinished run unless ``new``; the summary names the run for ``load_results`` and ``compare``.
    In a mapping, ``tasks`` may hold ``Task`` objects as well as names and folders."""
    if isinstance(experiment, (str, Path)):
        path = Path(experiment)
        spec = validate(ExperimentSpec, read_yaml_mapping(path, "experiment"), path, "experiment")
    elif isinstance(experiment, dict):
        spec = validate(ExperimentSpec, _saved_tasks(experiment, Path(db)), "experiment", "experiment")
    else:
        spec = experiment
    opened: list[Store] = []

    def open_store() -> Store:  # once the run is planned, as the CLI does: a planning error leaves no database behind
        opened.append(Store(db))
        return opened[-1]

    try:
        return run_experiment(spec, open_store, new=new, show_progress=show_progress)
    finally:
        for store in opened:
            store.close()
