"""A randomly initialised two-layer Gemma 3 with the embedded model's tokenizer.

Why: it keeps every real piece of `harness tune` (HF backend, peft, transformers' Trainer,
harness scoring during training) while a step costs a fraction of a second (mostly the
262k-vocabulary LM head), so --full, mixtures and early stopping can be exercised end to end
in the fast suite. Its scores are chance level; tests assert on mechanics (checkpoints, proportions, stopping), not on quality.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_gemma(folder: Path, tokenizer_source: Path, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-64 Gemma3ForCausalLM plus the real tokenizer into ``folder``."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, layer_types=["sliding_attention", "full_attention"],
        sliding_window=64, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    Gemma3ForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
