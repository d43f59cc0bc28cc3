"""The API backend against a real OpenAI-compatible server: llama-cpp-python running the
embedded Gemma 3 270M GGUF on 127.0.0.1. Echo + logprobs costs seconds per request on
two CPU threads, so every test keeps to a handful of items.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends import ModelSpec
from harness.cli.app import main
from harness.runner.execute import RunSummary, run_experiment
from harness.runner.ledger import cell_costs
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.backends.fault_proxy import FAULTS, FaultProxy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = Path(__file__).parent / "prompts"
KEY = "sk-test-NEVER-WRITE-ME-777"


def api_model(url: str, **fields: Any) -> ModelSpec:
    return ModelSpec(backend="openai", model="gemma-3-270m", base_url=url, **fields)


def run(db: Path, models: list[ModelSpec], tasks: list[str], limit: int, prompts: list[str] | None = None,
        shots: list[int] | None = None, new: bool = False) -> RunSummary:
    spec = ExperimentSpec(tasks=tasks, prompts=prompts, models=models, limit=limit, shots=shots or [0],
                          prompts_dirs=[str(PROMPTS)])
    return run_experiment(spec, Store(db), new=new, show_progress=False)


def stored(db: Path, run_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(task, prompt, item) -> what was stored, minus timings (which differ run to run)."""
    store = Store(db)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    out = {}
    for row in store.items([run_id]):
        cell = cells[row.cell_id]
        response = [{k: v for k, v in r.items() if k != "latency_s"} for r in row.response]
        key = (cell.task, cell.prompt, row.item_id)
        assert key not in out, f"duplicated item {key}"
        out[key] = {"response": response, "extracted": row.extracted, "scores": row.scores}
    return out


def predicted(record: dict[str, Any]) -> int:
    values = [r["logprob"] for r in record["response"]]
    return max(range(len(values)), key=lambda i: values[i])


def test_multiple_choice_via_logprobs_agrees_with_the_hf_backend(llama_url: str, tmp_path: Path, report: Any) -> None:
    n = 4  # echo + logprobs costs llama-cpp-python seconds per request (a full-vocabulary sort per token)
    api = run(tmp_path / "api.db", [api_model(llama_url, concurrency=2)], ["capitals"], n, prompts=["qa_plain"])
    hf = run(tmp_path / "hf.db", [ModelSpec()], ["capitals"], n, prompts=["qa_plain"])
    via_api, via_hf = stored(tmp_path / "api.db", api.run_id), stored(tmp_path / "hf.db", hf.run_id)
    assert len(via_api) == len(via_hf) == n
    agree = sum(predicted(via_api[k]) == predicted(via_hf[k]) for k in via_hf)
    diffs = [abs(a["logprob"] - b["logprob"]) for k in via_hf for a, b in zip(via_api[k]["response"], via_hf[k]["response"])]
    tokens = [(a["n_tokens"], b["n_tokens"]) for k in via_hf for a, b in zip(via_api[k]["response"], via_hf[k]["response"])]
    report(f"capitals/qa_plain, {n} items x 4 choices: llama.cpp server vs HF agree on {agree}/{n} predictions "
           f"({agree / n:.0%}); |logprob difference| mean {sum(diffs) / len(diffs):.3f}, max {max(diffs):.3f} nats")
    assert all(a == b for a, b in tokens), tokens  # the same continuation tokens are scored
    assert all(math.isfinite(r["logprob"]) for k in via_api for r in via_api[k]["response"])
    assert agree / n >= 0.8
    assert max(diffs) < 1.0  # same weights; llama.cpp computes with the quantized blocks, HF dequantized


def test_the_ledger_records_the_servers_usage(llama_url: str, tmp_path: Path) -> None:
    """The cost ledger of an API run is the server's own usage: each echo request's prompt_tokens is the whole text the HF
    backend reads with the same tokenizer (BOS included), and its completion_tokens the one generated token."""
    n = 2
    api = run(tmp_path / "api.db", [api_model(llama_url)], ["capitals"], n, prompts=["qa_plain"])
    hf = run(tmp_path / "hf.db", [ModelSpec()], ["capitals"], n, prompts=["qa_plain"])
    by_item = {row.item_id: row for row in Store(tmp_path / "hf.db").items([hf.run_id])}
    rows = Store(tmp_path / "api.db").items([api.run_id])
    assert len(rows) == n
    for row in rows:
        served = [(r["input_tokens"], r["output_tokens"]) for r in row.response]
        local = [(r["input_tokens"], r["output_tokens"]) for r in by_item[row.item_id].response]
        assert all(read > 0 and wrote == 1 for read, wrote in served), served
        assert [read for read, _ in served] == [read for read, _ in local], (served, local)
    [cost] = cell_costs(Store(tmp_path / "api.db"), [api.run_id])
    assert cost.ledger.requests == cost.ledger.sent == sum(len(r.response) for r in rows) and cost.ledger.unmetered == 0
    assert cost.ledger.tokens_in == sum(r["input_tokens"] for row in rows for r in row.response) and cost.ledger.tokens_out == cost.ledger.requests


def test_generation_via_chat_and_no_secret_in_any_written_file(
    llama_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    db = tmp_path / "results" / "harness.db"
    with FaultProxy(llama_url.removesuffix("/v1")) as proxy:
        code = main(["run", "--task", "arithmetic", "--prompt", "chat_calc", "--shots", "2", "--limit", "4", "--model", "openai:gemma-3-270m",
                     "--base-url", proxy.base_url, "--prompts-dir", str(PROMPTS), "--db", str(db), "--quiet"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert {c["path"] for c in proxy.log.forwarded} == {"/v1/chat/completions"}
    messages = proxy.log.forwarded[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]  # demonstrations as turns
    rows = [json.loads(line) for line in next(db.parent.rglob("items.jsonl")).read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(r["prompt"], list) for r in rows)
    assert all(r["response"][0]["kind"] == "generate" and r["response"][0]["n_tokens"] > 0 for r in rows)
    assert sum(r["scores"]["exact_match"] for r in rows) >= 0  # scored (a 270M base model may well get them wrong)
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in output.out + output.err


def test_fault_injected_run_stores_exactly_what_a_clean_run_stores(llama_url: str, tmp_path: Path, report: Any) -> None:
    """Generation only: multiple choice under faults is covered over HTTP by the fast tests,
    and echo requests here cost seconds each (a hang fault then also waits out a long timeout)."""
    tasks, limit, prompts = ["arithmetic"], 6, ["question", "equation"]
    clean = run(tmp_path / "clean.db", [api_model(llama_url, concurrency=2)], tasks, limit, prompts)
    again = run(tmp_path / "clean.db", [api_model(llama_url, concurrency=2)], tasks, limit, prompts)
    assert again.backend_requests == 0 and again.cache_hits == again.requests == clean.requests  # re-run: all from the cache
    with FaultProxy(llama_url.removesuffix("/v1"), fraction=0.5, hang_s=11.0, retry_after="1", seed=3) as proxy:
        faulty = run(tmp_path / "faulty.db", [api_model(proxy.base_url, concurrency=2, timeout_s=10.0)], tasks, limit, prompts)
    expected, got = stored(tmp_path / "clean.db", clean.run_id), stored(tmp_path / "faulty.db", faulty.run_id)
    assert len(got) == len(expected) == limit * len(prompts)
    assert got == expected
    stats = faulty.extra["backend_stats"]["openai:gemma-3-270m"]
    share = proxy.log.fault_total / proxy.log.calls
    report(f"fault injection: {proxy.log.fault_total}/{proxy.log.calls} calls faulted ({share:.0%}: {dict(sorted(proxy.log.faults.items()))}); "
           f"the backend retried {stats['retries']} times ({stats['retries_by_reason']}); {len(got)} items identical to the clean run")
    assert share >= 0.30 and set(proxy.log.faults) == set(FAULTS)
    # every injected fault cost exactly one retry (a slow server could add timeouts of its own, never fewer)
    assert stats["retries"] >= proxy.log.fault_total
    for kind in ("429", "500", "503"):
        assert stats["retries_by_reason"].get(kind, 0) == proxy.log.faults[kind]


def test_resume_after_sigkill_requests_only_the_missing_items(llama_url: str, tmp_path: Path) -> None:
    check_resume_after_sigkill(llama_url, tmp_path)


def check_resume_after_sigkill(url: str, tmp_path: Path) -> None:
    """A run SIGKILLed after 3 items, run again: it resumes and asks the server for exactly the
    items it had not stored (shared with the vllm serve tests)."""
    db, n = tmp_path / "resume.db", 8
    experiment = tmp_path / "experiment.yaml"
    with FaultProxy(url.removesuffix("/v1")) as proxy:
        models = [{"backend": "openai", "model": "gemma-3-270m", "base_url": proxy.base_url, "concurrency": 1}]
        experiment.write_text(yaml.safe_dump({"tasks": ["arithmetic"], "prompts": ["question"], "limit": n, "chunk_items": 1, "models": models}))
        command = [sys.executable, "-m", "harness.cli", "run", str(experiment), "--db", str(db), "--quiet"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = 0
        deadline = time.monotonic() + 240
        while before < 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            before = _count_items(db)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        done_before = _stored_prompts(db)
        assert 3 <= len(done_before) < n
        proxy.wait_idle()  # the killed run's last request may still be on its way to the server
        proxy.reset()
        summary = run_experiment(ExperimentSpec.model_validate(yaml.safe_load(experiment.read_text())), Store(db), show_progress=False)
    assert summary.resumed
    requested = [c["body"]["prompt"] for c in proxy.log.forwarded]
    assert not set(requested) & done_before  # nothing stored before the kill was asked again
    assert len(requested) == len(set(requested)) == n - len(done_before)
    assert _count_items(db) == n


def _count_items(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _stored_prompts(db: Path) -> set[str]:
    store = Store(db)
    try:
        return {str(item.prompt) for item in store.items([run.id for run in store.runs()])}
    finally:
        store.close()
