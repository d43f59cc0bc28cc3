"""The vllm: backend for real: vLLM's CPU build (.venv-vllm, made by scripts/vllm_venv.sh) runs
the embedded Gemma 3 270M and a LoRA adapter made by `harness tune`, in one engine, and agrees
with hf: on the same items: per-choice log-probs, predictions, greedy texts.

vLLM cannot live in the main venv (it pins torch and transformers), so the vLLM side runs in a
subprocess of that venv (tests/backends/vllm_runs.py) and the comparison reads both stores here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.cli.app import main as cli_main
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.backends import vllm_runs

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LOGPROB_TOLERANCE = 1e-3  # nats per choice; measured: max 6.5e-5 on ARC-Easy 5-shot (100 items), float32 on CPU


def vllm_python() -> Path:
    venv = Path(os.environ.get("HARNESS_VLLM_VENV", ROOT / ".venv-vllm"))
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no vLLM venv at {venv}: bash scripts/vllm_venv.sh makes it (scripts/test.sh does)")
    return python


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter trained a few steps by `harness tune` on ARC-Easy's few-shot pool."""
    out = tmp_path_factory.mktemp("tuned") / "lora"
    code = cli_main(["tune", "--task", "arc_easy", "--train-split", "fewshot", "--data-dir", str(DATA), "-o", str(out), "--steps", "4",
                     "--batch-size", "4", "--lr", "5e-3", "--eval-steps", "4", "--eval-limit", "5", "--quiet", "--json"])
    assert code == 0 and (out / "adapter_config.json").exists()
    return out


def stored(db: Path, run_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    store = Store(db)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    role = {c.model: ("tuned" if "adapter" in c.model else "base") for c in cells.values()}
    return {(role[cells[r.cell_id].model], cells[r.cell_id].task, r.item_id): {"response": r.response, "extracted": r.extracted}
            for r in store.items([run_id])}


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_vllm_agrees_with_hf_on_choices_and_greedy_texts_and_loads_base_and_adapter_once(
    adapter: Path, tmp_path: Path, report: Any
) -> None:
    db = tmp_path / "vllm.db"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    done = subprocess.run([str(vllm_python()), "-m", "tests.backends.vllm_runs", str(db), str(adapter), str(DATA)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loads"] == 1  # the base and its adapter ran on one engine, made with LoRA enabled
    spec = ExperimentSpec.model_validate({**vllm_runs.SPEC, "models": vllm_runs.models("hf", str(adapter)), "data_dirs": [str(DATA)]})
    hf_db = tmp_path / "hf.db"
    via_vllm, via_hf = stored(db, out["run_id"]), stored(hf_db, run_experiment(spec, Store(hf_db), show_progress=False).run_id)
    assert set(via_vllm) == set(via_hf) and len(via_hf) == 2 * (10 + 10)
    for role in ("base", "tuned"):
        mc = [k for k in via_hf if k[0] == role and k[1] == "arc_easy"]
        diffs = [abs(a["logprob"] - b["logprob"]) for k in mc for a, b in zip(via_vllm[k]["response"], via_hf[k]["response"])]
        same = sum(argmax([r["logprob"] for r in via_vllm[k]["response"]]) == argmax([r["logprob"] for r in via_hf[k]["response"]]) for k in mc)
        gen = [k for k in via_hf if k[0] == role and k[1] == "gsm8k"]
        texts = sum(via_vllm[k]["response"][0]["text"] == via_hf[k]["response"][0]["text"] for k in gen)
        report(f"vllm: vs hf: ({role}), ARC-Easy 5-shot {len(mc)} items: {same}/{len(mc)} predictions agree, |Δ logprob| max "
               f"{max(diffs):.1e}; GSM8K 5-shot greedy (64 tokens) {texts}/{len(gen)} texts identical")
        assert max(diffs) < LOGPROB_TOLERANCE and same == len(mc)
        # the cost ledger's counts: both read the same tokens (context and continuation, one tokenizer) and generate none
        assert all((a["input_tokens"], a["output_tokens"]) == (b["input_tokens"], 0) for k in mc
                   for a, b in zip(via_vllm[k]["response"], via_hf[k]["response"]))
        assert texts >= len(gen) - 1  # float32 on both; a near-tie may flip one greedy token
    tuned = [k for k in via_hf if k[0] == "tuned" and k[1] == "arc_easy"]
    moved = max(abs(a["logprob"] - b["logprob"]) for k in tuned for a, b in zip(via_vllm[k]["response"], via_vllm[("base", *k[1:])]["response"]))
    assert moved > 10 * LOGPROB_TOLERANCE  # the adapter was applied, not silently dropped
