"""harness: which prompt, few-shot setup or checkpoint is better, and is the difference real?

The Python API for notebooks and scripts (see ``harness.api``)::

    import harness
    summary = harness.run({"tasks": ["capitals"], "shots": [0, 3]})
    df = harness.load_results("results/harness.db", run=summary.run_id)
    comp = harness.compare("results/harness.db", runs=[summary.run_id])
    task = harness.Task(name="my_qa", type="generate", data={"test": "qa.csv"}, ...)   # a task.yaml as code

The packages follow the flow (docs/architecture.md): tasks -> prompts -> fewshot -> requests ->
backends -> scoring -> store -> runner -> analysis -> report, with the CLI on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.lazy import lazy_names

if TYPE_CHECKING:
    from harness.api import Task, compare, load_results, run

__all__ = ["Task", "compare", "load_results", "run"]


# the API is imported on first use, not with the package: ``harness --help`` and every ``import harness.<module>`` would
# otherwise load the whole stack (scipy, pandas) first
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, "api"))
