"""How a prompt becomes token ids for an HF tokenizer: chat prompts through the tokenizer's chat
template, text with the tokenizer's special tokens, and a (context, continuation) pair split the
way lm-eval splits it. Shared by ``hf:`` and ``vllm:``, so both score exactly the same tokens and
their log-likelihoods can be compared number for number.
"""

from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError
from harness.prompts.messages import Prompt
from harness.requests import LoglikelihoodRequest


def context_text(tokenizer: Any, prompt: Prompt, label: str) -> tuple[str, bool]:
    """Text of the prompt and whether special tokens still need adding (a chat template adds its own)."""
    if isinstance(prompt, str):
        return prompt, True
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(
            f"model '{label}' has no chat template, so it cannot take a chat prompt "
            "(*.chat.jinja); use a plain-text template (*.jinja) with it"
        )
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)), False


def encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special).input_ids)


def encode_pair(tokenizer: Any, request: LoglikelihoodRequest, label: str) -> tuple[list[int], list[int]]:
    """lm-eval's convention: trailing context spaces move to the continuation, and the
    continuation tokens are the tail of the whole string's tokens (merges are honoured)."""
    context, special = context_text(tokenizer, request.context, label)
    continuation = request.continuation
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(tokenizer, context + continuation, special)
    context_ids = encode(tokenizer, context, special)
    cont_ids = whole[len(context_ids) :]
    if not cont_ids:
        raise HarnessError(f"empty continuation after tokenisation: {request.continuation!r}")
    return whole[: len(context_ids)], cont_ids
