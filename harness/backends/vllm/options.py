"""The keys a ``vllm:`` model entry takes (besides backend, model, name, revision).

A light module (pydantic only), so an entry is checked without importing vLLM. The names are
vLLM's own engine arguments, so a user who knows ``vllm serve`` knows them; anything else vLLM
takes goes through ``engine_args``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.backends.base import ModelOptions, ModelSpec, options_of


class VLLMOptions(ModelOptions):
    """An in-process ``vllm.LLM``: the model's numerics (dtype, quantization, window, parallel layout),
    how the engine uses the machine (memory, caching, executor), and an optional LoRA adapter."""

    adapter: str | None = Field(default=None, description="PEFT LoRA adapter folder, served through vLLM's LoRARequest")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on a GPU that has it, else float32 (as hf:)"
    )
    max_model_len: int | None = Field(default=None, ge=8, description="context window; None: the model's own (its KV cache must fit)")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one copy of the model is split over")
    pipeline_parallel_size: int = Field(default=1, ge=1, description="pipeline stages (GPUs or nodes)")
    data_parallel_size: int = Field(default=1, ge=1, description="copies of the model, each serving part of the requests")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enable_prefix_caching: bool = Field(default=True, description="reuse the KV cache of shared prompt prefixes (few-shot demonstrations)")
    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = Field(
        default=None, description="ray: vLLM's Ray executor, for models spread over several nodes"
    )
    enforce_eager: bool | None = Field(default=None, description="no CUDA graphs / torch.compile; None: on CPU yes, on GPU no")
    quantization: str | None = Field(default=None, description="vLLM's quantization method (awq, gptq, fp8, ...)")
    max_num_seqs: int | None = Field(default=None, ge=1, description="sequences the engine batches at once")
    max_lora_rank: int | None = Field(default=None, ge=1, description="None: the largest rank among the adapters this run uses")
    trust_remote_code: bool = False
    engine_args: dict[str, Any] = Field(default_factory=dict, description="any other vllm.LLM argument, passed as given")


def vllm_options(spec: ModelSpec) -> VLLMOptions:
    return options_of(spec, VLLMOptions)
