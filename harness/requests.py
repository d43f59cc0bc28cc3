"""The seam between prompts and backends: typed requests in, typed responses out.

A prompt is either plain text (completion models) or a tuple of chat messages. Every
request has a stable ``key()`` so the response cache can recognise it across runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from harness.prompts.messages import Prompt, prompt_to_json
from harness.prompts.template import Rendered


def _digest(payload: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context``: log P(continuation | context)."""

    context: Prompt
    continuation: str

    def key(self) -> str:
        return _digest({"type": "loglikelihood", "context": prompt_to_json(self.context), "continuation": self.continuation})


@dataclass(frozen=True)
class GenerateRequest:
    """Generate from ``prompt`` until a stop sequence or ``max_tokens``.

    ``repeat`` distinguishes independent samples of the same prompt when temperature > 0,
    so the cache keeps them apart instead of collapsing them into one.
    """

    prompt: Prompt
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    seed: int = 0
    repeat: int = 0

    def key(self) -> str:
        payload = asdict(self)
        payload["prompt"] = prompt_to_json(self.prompt)
        payload["stop"] = list(self.stop)
        payload["type"] = "generate"
        return _digest(payload)


Request = LoglikelihoodRequest | GenerateRequest


@dataclass(frozen=True)
class LoglikelihoodResult:
    """``n_tokens``: the continuation's tokens (what ``acc_norm_tokens`` divides by). ``input_tokens`` / ``output_tokens``:
    what the request cost the model, for the cost ledger: the tokens it read (context and continuation) and generated
    (none locally; an API's echo request reports its one generated token). None: not known (a result cached before they
    were recorded, or a server that reports no usage)."""

    logprob: float
    is_greedy: bool
    n_tokens: int
    latency_s: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class GenerateResult:
    """``n_tokens``: the generated tokens. ``input_tokens`` / ``output_tokens``: what the request cost, for the cost
    ledger (the prompt's tokens as the model read them; the tokens it generated, as billed by an API). None: not known."""

    text: str
    n_tokens: int
    finish_reason: str = "stop"
    latency_s: float = 0.0
    token_logprobs: tuple[float, ...] | None = field(default=None)
    input_tokens: int | None = None
    output_tokens: int | None = None


Result = LoglikelihoodResult | GenerateResult


def metered(result: Result) -> tuple[int, int] | None:
    """(input tokens, output tokens) of a result, or None when the backend did not record them (the cost ledger's unmetered)."""
    if result.input_tokens is None or result.output_tokens is None:
        return None
    return result.input_tokens, result.output_tokens


def result_to_json(result: Result) -> dict[str, object]:
    """The result as the cache and the items store it; token counts that are not known are left out (so a result without them
    is stored as it always was)."""
    payload = asdict(result)
    for name in ("input_tokens", "output_tokens"):
        if payload[name] is None:
            del payload[name]
    payload["kind"] = "loglikelihood" if isinstance(result, LoglikelihoodResult) else "generate"
    return payload


def result_from_json(payload: dict[str, object]) -> Result:
    data = dict(payload)
    kind = data.pop("kind")
    if kind == "loglikelihood":
        return LoglikelihoodResult(**data)  # type: ignore[arg-type]
    if data.get("token_logprobs") is not None:
        data["token_logprobs"] = tuple(data["token_logprobs"])  # type: ignore[arg-type]
    return GenerateResult(**data)  # type: ignore[arg-type]


def loglikelihood_requests(rendered: Rendered) -> tuple[LoglikelihoodRequest, ...]:
    """One request per continuation, after its own prompt (per-choice contexts) or the shared one."""
    prompts = rendered.prompts or (rendered.prompt,) * len(rendered.continuations)
    return tuple(LoglikelihoodRequest(context=p, continuation=c) for p, c in zip(prompts, rendered.continuations))
