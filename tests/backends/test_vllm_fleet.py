"""One openai: run spread over two real vLLM servers, one SIGKILLed (with its engine process) mid-run:
the run finishes on the other and stores exactly what a run on one server stores.

Both servers run without prefix caching and each takes one request at a time (concurrency 1 per
server), so every request is computed alone, as in the one-server run: the stored log-probs and
texts are then bit-identical, not merely close.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.backends import ModelSpec
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.backends.test_openai_llama_server import stored

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LIMIT = 8


def fleet_model(urls: list[str]) -> ModelSpec:
    return ModelSpec(backend="openai", model="gemma-3-270m", base_url=urls if len(urls) > 1 else urls[0], endpoint="completions",
                     concurrency=1, timeout_s=30.0)


def run(db: Path, urls: list[str]) -> Any:
    # generation (arithmetic, its 3 templates) and multiple choice (ARC-Easy, 2 templates, echoed prompt log-probs)
    spec = ExperimentSpec(tasks=["arithmetic", "arc_easy"], models=[fleet_model(urls)], limit=LIMIT, data_dirs=[str(DATA)])
    return run_experiment(spec, Store(db), show_progress=False)


def test_two_servers_one_killed_mid_run_store_what_one_server_stores(tmp_path: Path, report: Any) -> None:
    from tests.backends.vllm_server import kill_server, vllm_servers

    with vllm_servers(2, extra=("--no-enable-prefix-caching",)) as servers:
        (first, _), (second, victim) = servers
        started = time.monotonic()
        alone = run(tmp_path / "one.db", [first])
        one_server_s = time.monotonic() - started
        # two servers take about half as long: a third of the one-server time is well inside the run
        killer = threading.Timer(one_server_s / 3, kill_server, args=(victim,))
        started = time.monotonic()
        killer.start()
        try:
            fleet = run(tmp_path / "two.db", [first, second])
        finally:
            killer.cancel()
        fleet_s = time.monotonic() - started
    assert victim.poll() is not None, "the second server was not killed during the run"
    endpoints = {e["url"]: e for e in fleet.extra["backend_stats"]["openai:gemma-3-270m"]["endpoints"]}
    report(f"two vLLM servers, one SIGKILLed at {one_server_s / 3:.0f}s: {fleet_s:.0f}s vs one server {one_server_s:.0f}s; {endpoints}")
    assert endpoints[second]["served"] > 0 and endpoints[second]["failed"] >= 1 and endpoints[second]["marked_down"] >= 1
    assert endpoints[first]["served"] > endpoints[second]["served"]
    one, two = stored(tmp_path / "one.db", alone.run_id), stored(tmp_path / "two.db", fleet.run_id)
    assert len(one) == 3 * LIMIT + 2 * LIMIT
    assert two == one
