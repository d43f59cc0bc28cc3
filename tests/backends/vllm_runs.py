"""Run in the vLLM venv by test_vllm.py: one experiment with the embedded model on vllm: and the
same model plus a LoRA adapter, stored in DB; prints the run id and how many engines were made.

``python -m tests.backends.vllm_runs DB ADAPTER DATA_DIR`` (the guard is required: vLLM spawns
its engine-core process, which re-imports the main module)."""

from __future__ import annotations

import json
import sys
from typing import Any

SPEC: dict[str, Any] = {"tasks": ["arc_easy", "gsm8k"], "prompts": ["lm_eval"], "shots": [5], "limit": 10, "max_tokens": 64}


def models(backend: str, adapter: str) -> list[dict[str, Any]]:
    extra = {"max_model_len": 2048} if backend == "vllm" else {}
    return [{"backend": backend, **extra}, {"backend": backend, "adapter": adapter, "name": f"{backend}+adapter", **extra}]


def main() -> None:
    from harness.backends.vllm.engine import POOL
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec
    from harness.store.store import Store

    db, adapter, data = sys.argv[1:4]
    spec = ExperimentSpec.model_validate({**SPEC, "models": models("vllm", adapter), "data_dirs": [data]})
    summary = run_experiment(spec, Store(db), show_progress=False)
    print(json.dumps({"run_id": summary.run_id, "loads": POOL.loads, "stats": summary.extra.get("backend_stats")}))


if __name__ == "__main__":
    main()
