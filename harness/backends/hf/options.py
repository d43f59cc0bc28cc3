"""The keys an ``hf:`` model entry takes (besides backend, model, name, revision).

A light module (pydantic only), so an entry is checked without importing torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.backends.base import ModelOptions, ModelSpec, options_of


class HFOptions(ModelOptions):
    """Local Hugging Face models: loading (dtype, device, remote code), an adapter, and budgets."""

    adapter: str | None = Field(default=None, description="PEFT adapter folder applied on top of the model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    max_batch_tokens: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=8)
    trust_remote_code: bool = False


def hf_options(spec: ModelSpec) -> HFOptions:
    return options_of(spec, HFOptions)
