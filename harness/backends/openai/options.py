"""The keys an ``openai:`` model entry takes (besides backend, model, name, revision), and how
credentials in them are kept out of dumps (the stored run config).

A light module (pydantic only), so an entry is checked without importing the client.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, field_serializer, field_validator, model_serializer

from harness.backends.base import ModelOptions, ModelSpec, options_of
from harness.core.redaction import redact_mapping, redact_url

# options added after run configs were first stored: left out of a dump at their default, so the
# config hash of a run that does not set them is the one it had before they existed
_NEWER = {"connect_timeout_s": 5.0, "max_retry_time_s": 120.0}


class OpenAIOptions(ModelOptions):
    """OpenAI-compatible endpoints: where, how requests are sent, and multiple choice without logprobs."""

    embedded_by_default: ClassVar[bool] = False  # `openai:` alone names no model

    # one server, or several replicas of it: requests are spread over them (endpoints.py)
    base_url: str | list[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"
    endpoint: Literal["auto", "chat", "completions"] = "auto"
    concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)  # for an answer, once connected (a long generation takes a while)
    connect_timeout_s: float = Field(default=_NEWER["connect_timeout_s"], gt=0)  # to connect: a dead host is known in seconds
    max_retries: int = Field(default=6, ge=0)
    # all attempts of one request together, backoffs included: a hung or dead server ends the run in
    # this long, not in (max_retries + 1) x timeout_s
    max_retry_time_s: float = Field(default=_NEWER["max_retry_time_s"], gt=0)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    extra_params: dict[str, Any] = Field(default_factory=dict)
    mc_fallback: Literal["error", "generate"] = "error"

    @field_serializer("extra_headers", "extra_params")
    def _hide_credentials(self, values: dict[str, Any]) -> dict[str, Any]:
        """Dumps (the stored run config) never carry the values of credential-named headers or parameters."""
        return dict(redact_mapping(values))

    @model_serializer(mode="wrap")
    def _newer_at_default_left_out(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in _NEWER and v == _NEWER[k])}

    @field_validator("base_url")
    @classmethod
    def _some_url(cls, url: str | list[str] | None) -> str | list[str] | None:
        if isinstance(url, list) and not url:
            raise ValueError("give at least one URL (or leave base_url out for $OPENAI_BASE_URL / OpenAI)")
        # replicas are a set (which one answers is not recorded): sorted, so the order they are named in
        # does not make another run
        return sorted(url) if isinstance(url, list) else url

    @field_validator("extra_params")
    @classmethod
    def _json_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Sent as JSON and part of the run's identity: a YAML date, NaN or infinity has no JSON form."""
        for name, value in params.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"'{name}' is not a JSON value (text, number, true/false, null, list or mapping; no dates, NaN or infinity)") from None
        return params

    @field_serializer("base_url")
    def _hide_userinfo(self, url: str | list[str] | None) -> str | list[str] | None:
        """Stored without user:password and with credential-like query values masked."""
        if isinstance(url, list):
            return [redact_url(u) for u in url]
        return redact_url(url) if url else url


def openai_options(spec: ModelSpec) -> OpenAIOptions:
    return options_of(spec, OpenAIOptions)
