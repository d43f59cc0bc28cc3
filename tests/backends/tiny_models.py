"""Tiny random Gemma 3 (sliding + full layers) and Llama models built in memory: no tokenizer,
no download, a forward pass in milliseconds; for exactness tests of the cache/mask code."""

from __future__ import annotations

from typing import Any

import torch
import transformers

VOCAB = 512


def gemma(window: int, attention: str) -> Any:
    config = transformers.Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=32, query_pre_attn_scalar=32, layer_types=["sliding_attention", "full_attention"], sliding_window=window,
        max_position_embeddings=512, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return _with_attention(transformers.Gemma3ForCausalLM, config, attention)


def llama(attention: str) -> Any:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=512, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return _with_attention(transformers.LlamaForCausalLM, config, attention)


def _with_attention(cls: Any, config: Any, attention: str) -> Any:
    config._attn_implementation = attention
    model = cls(config).eval()
    assert model.config._attn_implementation == attention
    return model
