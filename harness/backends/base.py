"""The backend seam: one ABC, two request kinds, and a registry of lazy factories.

A backend never sees tasks, templates or metrics, only typed requests; that is what lets
the runner cache, resume and batch identically for a local HF model and a remote API.
Factories import their heavy dependencies lazily, so ``harness tasks`` works without torch
and a missing extra is reported as the pip command that installs it.

A backend's identity (``identity_of``) is what the response cache keys, the run identity
(resume, ``harness ab`` reuse) and every cell's ``model_json`` hold, so it must describe the
model's *content*, not its name: ``content_sha256`` gives the full sha256 of a file, memoised
on disk by (path, size, mtime, ctime, inode) so a 1 GB checkpoint is read once, not on every
start.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from harness.core.errors import HarnessError, did_you_mean
from harness.core.registry import Registry
from harness.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)

EMBEDDED_MODEL = "gemma-3-270m"


class ModelSpec(BaseModel):
    """A model as the user declares it (CLI ``--model`` string or an experiment-file mapping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "hf"
    model: str = EMBEDDED_MODEL
    name: str | None = Field(default=None, description="display name; default backend:model")
    adapter: str | None = Field(default=None, description="PEFT adapter folder applied on top of the model")
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    max_batch_tokens: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=8)
    trust_remote_code: bool = False
    # OpenAI-compatible endpoints
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    endpoint: Literal["auto", "chat", "completions"] = "auto"
    concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    extra_params: dict[str, Any] = Field(default_factory=dict)
    mc_fallback: Literal["error", "generate"] = "error"

    @field_serializer("extra_headers")
    def _hide_credentials(self, headers: dict[str, str]) -> dict[str, str]:
        """Dumps (the stored run config) never carry credential-like header values."""
        secret = ("auth", "key", "token", "secret", "cookie")
        return {k: ("***" if any(s in k.lower() for s in secret) else v) for k, v in headers.items()}

    @field_serializer("base_url")
    def _hide_userinfo(self, url: str | None) -> str | None:
        if url and "@" in url.partition("://")[2].partition("/")[0]:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://{rest.partition('@')[2]}"
        return mask_url_credentials(url) if url else url

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = f"{self.backend}:{self.model}"
        return f"{base}+{self.adapter}" if self.adapter else base


_CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "sig", "password", "credential", "session")


def mask_url_credentials(url: str) -> str:
    """A URL with the values of credential-like query parameters (``?api_key=...``) masked;
    others (Azure's ``api-version``) kept, since they can change answers."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, "***" if any(w in k.lower() for w in _CREDENTIAL_WORDS) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs, safe="*"), parts.fragment))


def parse_model(text: str | None) -> ModelSpec:
    """``None``/'' -> the embedded model; ``backend:model`` otherwise (``hf:gpt2``, ``openai:gpt-4o``)."""
    if not text:
        return ModelSpec()
    backend, sep, model = text.partition(":")
    if not sep:
        if text == EMBEDDED_MODEL:
            return ModelSpec()
        raise HarnessError(
            f"--model {text!r}: expected BACKEND:MODEL (e.g. hf:{text}), or nothing for the embedded {EMBEDDED_MODEL}. "
            f"Backends: {', '.join(BACKENDS.names())}."
        )
    if backend not in BACKENDS:
        raise HarnessError(f"--model {text!r}: unknown backend '{backend}'.{did_you_mean(backend, BACKENDS.names())} Backends: {', '.join(BACKENDS.names())}.")
    return ModelSpec(backend=backend, model=model or EMBEDDED_MODEL)


class Backend(ABC):
    """Runs requests. Results come back in request order, one per request."""

    supports_loglikelihood: bool = True
    supports_chat: bool = True

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @classmethod
    def identity_of(cls, spec: ModelSpec) -> dict[str, Any]:
        """Everything that changes answers; part of every cache key. Never holds secrets.

        A classmethod so a fully cached run never has to load the model at all.
        """
        return {"backend": spec.backend, "model": spec.model, "adapter": spec.adapter, "revision": spec.revision}

    @property
    def identity(self) -> dict[str, Any]:
        return type(self).identity_of(self.spec)

    @classmethod
    def per_choice_contexts_problem(cls, spec: ModelSpec, prompt: Any) -> str | None:
        """Why this model cannot score a task whose choices have their own contexts (one request
        per choice, each with its own context and the same continuation), or None if it can.
        Asked at planning time with the first item's prompt, so a run fails before it starts."""
        return None

    @abstractmethod
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """log P(continuation | context) for each request."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generated text for each request."""

    def describe(self) -> dict[str, Any]:
        """Details worth recording with a run (device, dtype, resolved path...)."""
        return dict(self.identity)

    def stats(self) -> dict[str, Any]:
        """Counters worth reporting with a run (requests, retries...); empty when none."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, GPU memory)."""


# name -> a function that returns the backend class; built-ins are "module:attr" references and
# plugins entry points, both imported on first lookup (imports stay lazy)
BackendLoader = Callable[[], type[Backend]]


def backend_loader(value: object, name: str) -> BackendLoader:
    """A reference's or ``harness.backends`` entry point's object: a Backend subclass."""
    if not (isinstance(value, type) and issubclass(value, Backend)):
        raise TypeError(f"expected a subclass of harness.backends.Backend, got {value!r}")
    return lambda: value


BACKENDS: Registry[BackendLoader] = Registry("backend", "harness.backends", backend_loader)


def backend_class(spec: ModelSpec) -> type[Backend]:
    return BACKENDS.get(spec.backend)()


def load_backend(spec: ModelSpec) -> Backend:
    return backend_class(spec)(spec)
