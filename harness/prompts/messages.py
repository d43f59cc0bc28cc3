"""What a template renders and a backend reads: plain text (completion models) or chat messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


Prompt = str | tuple[Message, ...]


def prompt_to_json(prompt: Prompt) -> object:
    return prompt if isinstance(prompt, str) else [asdict(m) for m in prompt]


def prompt_from_json(value: object) -> Prompt:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise TypeError(f"a stored prompt is a string or a list of messages, not {type(value).__name__}")
    return tuple(Message(role=m["role"], content=m["content"]) for m in value)


def prompt_text(prompt: Prompt) -> str:
    """A readable single string for logs and diffs."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"[{m.role}] {m.content}" for m in prompt)
