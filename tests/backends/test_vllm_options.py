"""The vllm: backend without vLLM: its options, identity, the engine pool's load-once policy
(with a stand-in engine) and how prompt log-probs become a continuation's score. The real engine
is tested in test_vllm.py (the .venv-vllm venv)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.backends import ModelSpec, parse_model
from harness.backends.vllm import engine as vllm_engine
from harness.backends.vllm.backend import VLLMBackend, _score
from harness.backends.vllm.engine import EnginePool, adapter_rank, lora_rank_for
from harness.core.errors import HarnessError


def _model(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gemma3_text"}')
    (folder / "model.safetensors").write_bytes(b"weights-1")
    (folder / "tokenizer.json").write_text("{}")
    return folder


def _adapter(tmp_path: Path, name: str = "lora", r: int = 8, weights: bytes = b"lora-1", peft_type: str = "LORA") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": r}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_options_are_vllms_own_and_others_are_refused() -> None:
    spec = ModelSpec(backend="vllm", model="m", tensor_parallel_size=2, distributed_executor_backend="ray", engine_args={"block_size": 16})
    assert spec.options.tensor_parallel_size == 2 and spec.takes("adapter") and not spec.takes("base_url")
    assert parse_model("vllm:org/model").backend == "vllm"
    with pytest.raises(ValueError, match="that is an option of openai:"):
        ModelSpec(backend="vllm", model="m", base_url="http://x")
    with pytest.raises(ValueError, match="Did you mean 'max_model_len'"):
        ModelSpec(backend="vllm", model="m", max_model_length=10)
    with pytest.raises(ValueError, match="distributed_executor_backend"):
        ModelSpec(backend="vllm", model="m", distributed_executor_backend="slurm")


def test_without_vllm_installed_the_error_says_how_to_get_it(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(HarnessError, match=r"harness\[vllm\].*scripts/vllm_venv.sh"):
        VLLMBackend(ModelSpec(backend="vllm", model=str(_model(tmp_path))))


def test_identity_holds_content_and_what_changes_numbers_not_what_only_changes_speed(tmp_path: Path) -> None:
    model, adapter = _model(tmp_path), _adapter(tmp_path)
    base = VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model)))
    assert base["backend"] == "vllm" and base["model_content"]["weights"] and base["adapter"] is None and base["dtype"] == "float32"
    same = [{"enable_prefix_caching": False}, {"gpu_memory_utilization": 0.5}, {"data_parallel_size": 2}, {"max_num_seqs": 4},
            {"distributed_executor_backend": "ray"}, {"enforce_eager": True}]
    for change in same:
        assert VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model), **change)) == base, change
    differ = [{"tensor_parallel_size": 2}, {"pipeline_parallel_size": 2}, {"max_model_len": 512}, {"dtype": "bfloat16"},
              {"quantization": "fp8"}, {"engine_args": {"kv_cache_dtype": "fp8"}}, {"adapter": str(adapter)}]
    for change in differ:
        assert VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model), **change)) != base, change
    tuned = VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model), adapter=str(adapter)))
    (adapter / "adapter_model.safetensors").write_bytes(b"lora-2")  # retrained in place: another identity
    assert VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model), adapter=str(adapter))) != tuned
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert VLLMBackend.identity_of(ModelSpec(backend="vllm", model=str(model)))["model_content"] != base["model_content"]


def test_adapter_ranks_round_up_to_what_vllm_takes_and_non_lora_adapters_are_refused(tmp_path: Path) -> None:
    assert [lora_rank_for(r) for r in (1, 2, 8, 9, 64, 300)] == [1, 8, 8, 16, 64, 320]
    with pytest.raises(HarnessError, match="up to 512"):
        lora_rank_for(1024)
    assert adapter_rank(str(_adapter(tmp_path, r=12))) == 12
    with pytest.raises(HarnessError, match="IA3 adapter"):
        adapter_rank(str(_adapter(tmp_path, "ia3", peft_type="IA3")))
    with pytest.raises(HarnessError, match="not a PEFT adapter folder"):
        adapter_rank(str(tmp_path))


@dataclass
class FakeLLM:
    kwargs: dict[str, Any]
    closed: bool = False

    @property
    def llm_engine(self) -> Any:
        return SimpleNamespace(engine_core=SimpleNamespace(shutdown=self.shutdown))

    def shutdown(self) -> None:
        self.closed = True


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> EnginePool:
    made: list[FakeLLM] = []
    monkeypatch.setattr(vllm_engine, "make_llm", lambda spec, kwargs: made.append(FakeLLM(kwargs)) or made[-1])
    fresh = EnginePool()
    fresh.made = made  # type: ignore[attr-defined]
    return fresh


def test_a_base_and_its_adapters_share_one_engine_made_with_lora_when_announced(tmp_path: Path, pool: EnginePool) -> None:
    model = _model(tmp_path)
    base = ModelSpec(backend="vllm", model=str(model))
    tuned = ModelSpec(backend="vllm", model=str(model), adapter=str(_adapter(tmp_path, r=12)))
    pool.expect([base, tuned])
    pool.expect([base])  # announced again by the inner run: harmless
    first = pool.acquire(base)
    assert first.lora_rank == 16 and first.llm.kwargs["enable_lora"] and first.llm.kwargs["max_lora_rank"] == 16
    pool.release(base)
    assert pool.engine is first and not first.llm.closed  # the tuned model still needs it
    assert pool.acquire(tuned) is first and pool.loads == 1  # the base was loaded once
    pool.release(tuned)
    assert pool.engine is None and first.llm.closed  # nobody announced is left: memory given back


def test_without_an_announcement_an_adapter_reloads_and_other_engines_replace_the_old(tmp_path: Path, pool: EnginePool) -> None:
    model = _model(tmp_path)
    base = ModelSpec(backend="vllm", model=str(model))
    plain = pool.acquire(base)
    assert "enable_lora" not in plain.llm.kwargs
    tuned = pool.acquire(ModelSpec(backend="vllm", model=str(model), adapter=str(_adapter(tmp_path))))
    assert tuned is not plain and plain.llm.closed and tuned.lora_rank == 8  # never two engines at once
    assert pool.acquire(base) is tuned  # a LoRA engine serves its base too (bit-identical, see engine.py)
    other = pool.acquire(ModelSpec(backend="vllm", model=str(model), max_model_len=512))
    assert other is not tuned and tuned.llm.closed and other.llm.kwargs["max_model_len"] == 512 and pool.loads == 3
    pool.release(ModelSpec(backend="vllm", model=str(model), max_model_len=512))
    assert pool.engine is None


def _logprob(value: float, rank: int) -> Any:
    return SimpleNamespace(logprob=value, rank=rank)


def test_continuation_score_reads_only_computed_rows_and_checks_each_token() -> None:
    ids = [2, 10, 11, 12, 20, 21]  # context 2 10 11 12, continuation 20 21
    rows: list[Any] = [None, {10: _logprob(-1, 1)}, {11: _logprob(-1, 1)}, {12: _logprob(-1, 1)},
                       {20: _logprob(-0.5, 1)}, {21: _logprob(-0.25, 3), 7: _logprob(-0.1, 1)}]
    scored = _score(ids, 4, SimpleNamespace(prompt_logprobs=rows, num_cached_tokens=0))
    assert scored is not None and scored.logprob == -0.75 and scored.n_tokens == 2 and not scored.is_greedy
    assert _score(ids, 4, SimpleNamespace(prompt_logprobs=rows, num_cached_tokens=3)) is not None  # the row of position 4 was computed
    assert _score(ids, 4, SimpleNamespace(prompt_logprobs=rows, num_cached_tokens=4)) is None  # served from the cache: no logits there
    garbage = [*rows[:4], {999: _logprob(-0.5, 1)}, rows[5]]
    assert _score(ids, 4, SimpleNamespace(prompt_logprobs=garbage, num_cached_tokens=0)) is None  # a row without its token
    assert _score(ids, 4, SimpleNamespace(prompt_logprobs=rows[:5], num_cached_tokens=0)) is None
