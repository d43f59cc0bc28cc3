"""A task's metrics and filters checked against scoring's registries.

``tasks/`` validates a task.yaml's structure but cannot know which metrics and filters exist
(they live a layer above it), so every caller that runs, validates or rescores a task passes it
through ``check_task``; the error names the task file and the field, as YAML validation does.
"""

from __future__ import annotations

from harness.core.errors import HarnessError
from harness.scoring.filters import build_filter
from harness.scoring.metrics import get_metric
from harness.scoring.sampling_metrics import samples_needed
from harness.tasks.task import Task


def metric_problem(task: Task, name: str) -> str | None:
    """Why ``name`` cannot be a metric listed in this task's YAML, or None."""
    spec = task.spec
    try:
        metric = get_metric(name)
    except HarnessError as exc:
        return str(exc)
    if metric.written_by:
        return f"metric '{name}' is not scored during a run; `{metric.written_by}` adds it to a stored run"
    if samples_needed(name) > spec.repeats:
        return (f"metric '{name}' needs at least {samples_needed(name)} samples per item; set 'repeats: {samples_needed(name)}' "
                "(and a generation temperature > 0)")
    if spec.type not in metric.task_types:
        return f"metric '{name}' does not apply to a {spec.type} task (it is for: {', '.join(metric.task_types)})"
    if metric.requires is not None:
        try:
            metric.requires()
        except HarnessError as exc:
            return str(exc)
    return None


def check_task(task: Task) -> Task:
    """``task`` itself when its metrics and filters exist and fit its type; else a HarnessError naming the file and field."""
    for name in task.spec.metrics:
        problem = metric_problem(task, name)
        if problem:
            raise HarnessError(f"{task.yaml_path}: invalid task: field 'metrics': {problem} (got {list(task.spec.metrics)!r}).")
    for index, step in enumerate(task.spec.filters):
        try:
            build_filter(step)
        except HarnessError as exc:
            raise HarnessError(f"{task.yaml_path}: invalid task: field 'filters.{index}': {exc}") from None
    return task
