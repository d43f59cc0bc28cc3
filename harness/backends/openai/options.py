"""The keys an ``openai:`` model entry takes (besides backend, model, name, revision), and how
credentials in them are kept out of dumps (the stored run config).

A light module (pydantic only), so an entry is checked without importing the client.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_serializer, field_validator

from harness.backends.base import ModelOptions, ModelSpec, options_of

_CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "sig", "password", "credential", "session")


def mask_url_credentials(url: str) -> str:
    """A URL with the values of credential-like query parameters (``?api_key=...``) masked;
    others (Azure's ``api-version``) kept, since they can change answers."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, "***" if any(w in k.lower() for w in _CREDENTIAL_WORDS) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs, safe="*"), parts.fragment))


class OpenAIOptions(ModelOptions):
    """OpenAI-compatible endpoints: where, how requests are sent, and multiple choice without logprobs."""

    # one server, or several replicas of it: requests are spread over them (endpoints.py)
    base_url: str | list[str] | None = None
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

    @field_validator("base_url")
    @classmethod
    def _some_url(cls, url: str | list[str] | None) -> str | list[str] | None:
        if isinstance(url, list) and not url:
            raise ValueError("give at least one URL (or leave base_url out for $OPENAI_BASE_URL / OpenAI)")
        # replicas are a set (which one answers is not recorded): sorted, so the order they are named in
        # does not make another run
        return sorted(url) if isinstance(url, list) else url

    @field_serializer("base_url")
    def _hide_userinfo(self, url: str | list[str] | None) -> str | list[str] | None:
        if isinstance(url, list):
            return [hide_userinfo(u) for u in url]
        return hide_userinfo(url) if url else url


def hide_userinfo(url: str) -> str:
    """The URL without a user:password part, and with credential-like query values masked."""
    if "@" in url.partition("://")[2].partition("/")[0]:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{rest.partition('@')[2]}"
    return mask_url_credentials(url)


def openai_options(spec: ModelSpec) -> OpenAIOptions:
    return options_of(spec, OpenAIOptions)
