"""A deterministic backend with no model, for fast tests of everything around the model.

Scores and texts are derived from a hash of the request and the model name, so they are
stable across runs and processes. Tests subclass it to script answers or count calls.
Its "tokens" are whitespace-separated words (``scripted_tokens``): a log-likelihood request reads
its context's and continuation's, a generate request its prompt's and writes two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import Field

from harness.backends.base import Backend, ModelOptions, ModelSpec
from harness.prompts.messages import prompt_text
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult


def scripted_tokens(text: str) -> int:
    """What the scripted backend counts as a text's tokens (its cost ledger's): whitespace-separated words."""
    return len(text.split())


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScriptedOptions(ModelOptions):
    """It stands in for a tuned model in tests of the tuning workflow (tune cards, overlap checks),
    so it takes an adapter folder: never loaded, only part of its label and identity."""

    adapter: str | None = Field(default=None, description="a folder standing in for a PEFT adapter (never loaded)")


class ScriptedBackend(Backend):
    options_model = ScriptedOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.loglikelihood_calls = 0
        self.generate_calls = 0
        self.requests_seen: list[object] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        self.loglikelihood_calls += len(requests)
        self.requests_seen.extend(requests)
        return [self.score(r) for r in requests]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        self.generate_calls += len(requests)
        self.requests_seen.extend(requests)
        return [self.complete(r) for r in requests]

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        value = -10 * _unit(self.spec.model, prompt_text(request.context), request.continuation) - 0.1 * len(request.continuation)
        read = scripted_tokens(prompt_text(request.context)) + scripted_tokens(request.continuation)
        return LoglikelihoodResult(logprob=value, is_greedy=value > -2, n_tokens=max(1, len(request.continuation.split())),
                                   input_tokens=read, output_tokens=0)

    def complete(self, request: GenerateRequest) -> GenerateResult:
        number = int(_unit(self.spec.model, prompt_text(request.prompt), str(request.seed), str(request.repeat)) * 200)
        return GenerateResult(text=f" {number}\n", n_tokens=2, input_tokens=scripted_tokens(prompt_text(request.prompt)), output_tokens=2)
