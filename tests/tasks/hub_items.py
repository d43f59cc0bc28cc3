"""Run in a subprocess by test_sources.py with the hub cache of the test (HF_DATASETS_CACHE) and
offline mode set before ``datasets`` is imported: prints a task's items and 3-shot prompts as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.runner.planning import plan, prepare, selector_for
from harness.runner.spec import ExperimentSpec


def described(task_dir: str, data_dir: str) -> list[list[object]]:
    spec = ExperimentSpec(tasks=[task_dir], data_dirs=[data_dir], shots=[3], limit=8, prompts=["lm_eval"])
    out: list[list[object]] = []
    for cell in plan(spec):
        selector = selector_for(cell)
        for pos, item in enumerate(cell.items):
            prepared = prepare(cell, pos, item, selector)
            out.append([item.id, item.input, list(item.choices or ()), item.target, str(prepared.rendered.prompt), list(prepared.demo_ids)])
    return out


if __name__ == "__main__":
    print(json.dumps(described(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(Path.cwd()))))
