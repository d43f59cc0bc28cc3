"""Credentials out of everything harness prints or stores, in one place.

Why one module: a key reaches harness through an environment variable, a header, a URL's
``user:password@`` or its query (``?api-key=``, ``?sig=``), or a request parameter named like
one, and it must be kept out of error messages, logs, the stored run config, cell identities,
exports and ``--json`` output alike. So every caller asks the same two questions here: is this
name a credential's (``is_credential_name``), and what does this text, URL or mapping look like
with the credentials replaced by ``MASK`` (``redact_text``, ``redact_url``, ``redact_mapping``).

Masking (not dropping) a credential keeps a stored identity that still tells servers apart (host,
path, other query values) and that does not change when only the key does, so caches still hit.

Text is redacted *before* it is truncated: a cut through a secret leaves a prefix that no longer
matches it, and that prefix is most of the key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"

# a name is a credential's when one of its words is one of these ...
_ANY_WORD = frozenset({
    "apikey", "secret", "password", "passwd", "pwd", "passphrase", "authorization", "auth", "credential", "credentials",
    "cookie", "bearer", "signature", "sig", "jwt",
})  # fmt: skip
# ... or its last word is one of these ("api_key", "access_token"; not "stop_token_ids", "max_tokens")
_LAST_WORD = frozenset({"key", "token", "session"})
# ... or it is one of these whole ("?code=" of Azure Functions)
_WHOLE = frozenset({"code"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# secrets shorter than this are not searched for in text (they would mask ordinary words)
MIN_SECRET = 4


def words_of(name: str) -> list[str]:
    """``X-Api-Key`` -> ['x', 'api', 'key']; ``accessToken`` -> ['access', 'token']."""
    return [w.lower() for w in _WORD.findall(name)]


def is_credential_name(name: str) -> bool:
    """Whether a header, query parameter or option named ``name`` carries a credential."""
    words = words_of(name)
    if not words:
        return False
    return bool(_ANY_WORD.intersection(words)) or words[-1] in _LAST_WORD or name.lower() in _WHOLE or "".join(words) in _ANY_WORD


def truncate(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, with a marker that says how much was cut."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


# -- URLs --------------------------------------------------------------------------------
def _split_netloc(netloc: str) -> tuple[str, str]:
    """(userinfo, host[:port]) of a netloc; the last '@' ends the userinfo (passwords hold '@' unencoded)."""
    userinfo, at, host = netloc.rpartition("@")
    return (userinfo, host) if at else ("", netloc)


def redact_url(url: str) -> str:
    """The URL without its ``user:password@`` and with the values of credential-like query
    parameters masked (``?api-version=2024-02-01&api_key=***``): what a URL is stored and shown as.
    Other query values are kept: they can change answers (Azure's ``api-version``)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' in the host: show nothing of it that could be a secret
        return redact_text(url)
    _, host = _split_netloc(parts.netloc)
    query = parts.query
    if query:
        pairs = [(k, MASK if is_credential_name(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The credentials a URL holds: its userinfo's password (the user name is not searched for: it is
    often a word such as 'user'), credential-like query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo, _ = _split_netloc(parts.netloc)
    user, colon, password = userinfo.partition(":")
    found = [unquote(password if colon else user)] if (password if colon else user) else []  # a bare https://TOKEN@host is one too
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_credential_name(k)]
    return found


# -- mappings (headers, request parameters, stored records) ------------------------------
def redact_mapping(value: Any) -> Any:
    """A copy of ``value`` (nested dicts and lists) with the value of every credential-named key masked."""
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_credential_name(k) and v not in (None, "") else redact_mapping(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_mapping(v) for v in value]
    return value


def mapping_secrets(value: Any) -> list[str]:
    """Every string held under a credential-named key of ``value`` (nested), and the token of a
    ``Bearer <token>`` value on its own."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str) and is_credential_name(k):
                found += [s for s in _strings(v)]
            else:
                found += mapping_secrets(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found += mapping_secrets(v)
    return [part for s in found for part in (s, *s.split()[1:])]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


# -- text ----------------------------------------------------------------------------------
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=:-]{4,}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"]+@")
_QUERYISH = re.compile(r"([?&;\s,(]|^)([A-Za-z0-9_.-]+)=([^\s&;,'\"<>)]+)")  # ?api-key=..., token=...
_JSONISH = re.compile(r"([\"'])([A-Za-z0-9_.-]+)\1(\s*:\s*)([\"'])([^\"']*)\4")  # "api_key": "..."
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")


def _mask_query(match: re.Match[str]) -> str:
    lead, name, value = match.groups()
    return f"{lead}{name}={MASK}" if is_credential_name(name) and value != MASK else match.group(0)


def _mask_json(match: re.Match[str]) -> str:
    quote_, name, sep, open_, value = match.groups()
    return f"{quote_}{name}{quote_}{sep}{open_}{MASK}{open_}" if is_credential_name(name) and value else match.group(0)


def redact_text(text: str, secrets: Iterable[str] = (), limit: int | None = None) -> str:
    """``text`` with every known secret (and its URL-encoded forms) replaced by ``MASK``, then
    whatever still looks like one: ``Bearer <token>``, a URL's ``user:password@``, ``name=value``
    or ``"name": "value"`` where the name is a credential's, an ``sk-...`` key; *then* cut to ``limit``."""
    forms = {form for secret in secrets if secret and len(secret) >= MIN_SECRET for form in (secret, quote(secret, safe=""), quote_plus(secret))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERYISH.sub(_mask_query, text)
    text = _JSONISH.sub(_mask_json, text)
    text = _OPENAI_KEY.sub(MASK, text)
    return truncate(text, limit)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` (a string, or nested mappings and lists) as it may be echoed in a message: credential-named
    keys masked, and every string through ``redact_text``; to be bounded (``shorten``) *after* this."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_credential_name(k) else redact_value(v, secrets)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, secrets) for v in value]
    return value


# the HTTP clients under the openai package (httpx2 from openai 3, httpx before) and openai's own
LIBRARY_LOGGERS = ("httpx2", "httpcore2", "httpx", "httpcore", "openai")


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message of ``secrets`` (and of what looks like one),
    for the loggers of libraries that log request URLs and headers (httpx, openai at debug level)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage(), self.secrets), None
        return True


def redact_logs(secrets: Iterable[str], loggers: Iterable[str] = LIBRARY_LOGGERS) -> RedactingFilter:
    """Install a ``RedactingFilter`` on ``loggers``; returns it, to remove with ``unredact_logs``."""
    made = RedactingFilter(secrets)
    for name in loggers:
        logging.getLogger(name).addFilter(made)
    return made


def unredact_logs(made: RedactingFilter, loggers: Iterable[str] = LIBRARY_LOGGERS) -> None:
    for name in loggers:
        logging.getLogger(name).removeFilter(made)
