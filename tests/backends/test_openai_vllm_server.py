"""The openai: backend against a real `vllm serve` (vLLM's CPU build, .venv-vllm) on the embedded
Gemma 3 270M: multiple choice through echoed prompt log-probs, chat through a chat template given
to the server, concurrency that raises throughput (vLLM batches what is in flight), retries
under injected faults that store exactly what a clean run stores, and a SIGKILLed run that resumes
asking only for what it had not stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends import ModelSpec
from harness.backends.openai.backend import OpenAIBackend
from harness.cli.app import main
from harness.requests import GenerateRequest
from tests.backends.fault_proxy import FaultProxy
from tests.backends.test_openai_llama_server import PROMPTS, check_resume_after_sigkill, predicted, run, stored

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def vllm_url() -> Iterator[str]:
    from tests.backends.vllm_server import vllm_server

    with vllm_server() as (url, _):
        yield url


def api_model(url: str, **fields: Any) -> ModelSpec:
    return ModelSpec(backend="openai", model="gemma-3-270m", base_url=url, endpoint="completions", **fields)


def test_multiple_choice_via_echoed_logprobs_agrees_with_hf(vllm_url: str, tmp_path: Path, report: Any) -> None:
    n = 10
    spec_args = {"tasks": ["arc_easy"], "limit": n, "prompts": ["lm_eval"], "shots": [5]}
    api = run_with_data(tmp_path / "api.db", [api_model(vllm_url, concurrency=8)], **spec_args)
    hf = run_with_data(tmp_path / "hf.db", [ModelSpec()], **spec_args)
    via_api, via_hf = stored(tmp_path / "api.db", api.run_id), stored(tmp_path / "hf.db", hf.run_id)
    assert len(via_api) == len(via_hf) == n
    agree = sum(predicted(via_api[k]) == predicted(via_hf[k]) for k in via_hf)
    diffs = [abs(a["logprob"] - b["logprob"]) for k in via_hf for a, b in zip(via_api[k]["response"], via_hf[k]["response"])]
    report(f"openai: on vllm serve vs hf:, ARC-Easy 5-shot {n} items: {agree}/{n} predictions agree, |Δ logprob| max {max(diffs):.1e}")
    assert agree == n and max(diffs) < 1e-3


def run_with_data(db: Path, models: list[ModelSpec], **fields: Any) -> Any:
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec
    from harness.store.store import Store

    spec = ExperimentSpec(models=models, data_dirs=[str(DATA)], prompts_dirs=[str(PROMPTS)], **fields)
    return run_experiment(spec, Store(db), show_progress=False)


def test_chat_goes_to_chat_completions_with_the_servers_template(vllm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "chat.db"
    with FaultProxy(vllm_url.removesuffix("/v1")) as proxy:
        code = main(["run", "--task", "arithmetic", "--prompt", "chat_calc", "--shots", "2", "--limit", "4", "--model", "openai:gemma-3-270m",
                     "--base-url", proxy.base_url, "--prompts-dir", str(PROMPTS), "--db", str(db), "--quiet", "--json"])
    assert code == 0, capsys.readouterr().err
    assert {c["path"] for c in proxy.log.forwarded} == {"/v1/chat/completions"}
    assert [m["role"] for m in proxy.log.forwarded[0]["body"]["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_concurrency_raises_throughput_and_keeps_answers(vllm_url: str, report: Any) -> None:
    requests = [GenerateRequest(prompt=f"Q: What is {a} plus {a + 3}?\nA:", max_tokens=24, stop=("\n",)) for a in range(24)]
    timings, texts = {}, {}
    for concurrency in (1, 8):
        backend = OpenAIBackend(api_model(vllm_url, concurrency=concurrency))
        backend.generate(requests[:2])  # warm
        started = time.perf_counter()
        texts[concurrency] = [r.text for r in backend.generate(requests)]
        timings[concurrency] = time.perf_counter() - started
        backend.close()
    speedup = timings[1] / timings[8]
    report(f"vllm serve, 24 greedy requests of 24 tokens: concurrency 1 {timings[1]:.1f}s, 8 {timings[8]:.1f}s ({speedup:.1f}x)")
    assert speedup > 1.5
    same = sum(a == b for a, b in zip(texts[1], texts[8]))
    assert same >= len(requests) - 1  # batched numerics may flip a near-tie, rarely


def test_fault_injected_run_stores_exactly_what_a_clean_run_stores(vllm_url: str, tmp_path: Path) -> None:
    tasks, limit, prompts = ["arithmetic"], 6, ["question", "equation"]
    clean = run(tmp_path / "clean.db", [api_model(vllm_url, concurrency=1)], tasks, limit, prompts)
    with FaultProxy(vllm_url.removesuffix("/v1"), fraction=0.5, hang_s=6.0, retry_after="1", seed=3) as proxy:
        faulty = run(tmp_path / "faulty.db", [api_model(proxy.base_url, concurrency=1, timeout_s=5.0)], tasks, limit, prompts)
    assert proxy.log.fault_total > 0
    assert stored(tmp_path / "faulty.db", faulty.run_id) == stored(tmp_path / "clean.db", clean.run_id)


def test_resume_after_sigkill_requests_only_the_missing_items(vllm_url: str, tmp_path: Path) -> None:
    check_resume_after_sigkill(vllm_url, tmp_path)
