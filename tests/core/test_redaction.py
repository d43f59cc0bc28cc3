"""The one place that knows what a credential looks like (harness/core/redaction.py): names, URLs,
mappings and text, redacted before they are cut. The backends' use of it: tests/backends/test_redaction.py."""

from __future__ import annotations

import pytest

from harness.core.errors import HarnessError
from harness.core.redaction import is_credential_name, redact_mapping, redact_text, redact_url, redact_value, url_secrets
from harness.core.yamlfile import validate

KEY = "sk-test-NEVER-WRITE-ME-4242"
QUERY_KEY = "qk-SECRET-in-the-query-7777"
PASSWORD = "pw-SECRET-in-userinfo-3131"


def leaked(text: str, secret: str = KEY, shortest: int = 8) -> bool:
    """Whether ``text`` holds ``secret`` or any prefix of it of at least ``shortest`` characters."""
    return any(secret[:n] in text for n in range(shortest, len(secret) + 1))


@pytest.mark.parametrize("name", ["api_key", "api-key", "X-Api-Key", "Authorization", "access_token", "token", "sig", "key", "apiKey",
                                  "client_secret", "password", "Cookie", "Ocp-Apim-Subscription-Key", "code"])
def test_credential_names(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "stop_token_ids", "api-version", "X-Team", "top_k", "author", "keep_alive", "model"])
def test_names_that_are_not_credentials_are_kept(name: str) -> None:
    assert not is_credential_name(name)


def test_redact_first_then_truncate_whatever_the_cut() -> None:
    for pad in range(480, 510):
        said = redact_text("x" * pad + KEY + " tail", [KEY], limit=500)
        assert not leaked(said), pad
        assert len(said) < 560


def test_text_patterns_are_masked_without_knowing_the_secret() -> None:
    said = redact_text(f"for url 'http://u:{PASSWORD}@h/v1/completions?api-key={QUERY_KEY}&api-version=2' "
                       f"Authorization: Bearer {KEY} {{\"access_token\": \"{QUERY_KEY}\"}} {KEY}")
    assert not leaked(said) and not leaked(said, QUERY_KEY) and not leaked(said, PASSWORD)
    assert "api-version=2" in said and "h/v1/completions" in said


def test_a_stored_url_keeps_the_server_and_masks_the_key() -> None:
    url = f"https://user:{PASSWORD}@host.example/v1?api-version=2024-02-01&api-key={QUERY_KEY}&sig={KEY}&token=t0ken"
    assert redact_url(url) == "https://host.example/v1?api-version=2024-02-01&api-key=***&sig=***&token=***"
    assert redact_url(url.replace(QUERY_KEY, "another-key")) == redact_url(url)  # only the key changed: the same server
    assert redact_mapping({"Authorization": f"Bearer {KEY}", "X-Team": "evals", "body": {"auth": {"a": KEY}}, "top_k": 3}) == {
        "Authorization": "***", "X-Team": "evals", "body": {"auth": "***"}, "top_k": 3}


def test_url_secrets_are_the_password_and_the_credential_query_values() -> None:
    assert url_secrets(f"http://user:{PASSWORD}@h/v1?api-key={QUERY_KEY}&api-version=2") == [PASSWORD, QUERY_KEY]
    assert url_secrets(f"https://{KEY}@h/v1") == [KEY]  # a bare token as userinfo


def test_an_echoed_wrong_value_is_redacted_before_it_is_shortened() -> None:
    from pydantic import BaseModel

    class Entry(BaseModel):
        extra_headers: dict[str, str] = {}
        token: int = 0

    with pytest.raises(HarnessError) as caught:
        validate(Entry, {"extra_headers": "x" * 300 + f"Bearer {KEY}"}, "e.yaml", "entry")
    assert not leaked(str(caught.value)) and "e.yaml" in str(caught.value)
    with pytest.raises(HarnessError) as caught:
        validate(Entry, {"token": KEY}, "e.yaml", "entry")  # a credential-named field: its value is never echoed
    assert not leaked(str(caught.value), shortest=4) and "got ***" in str(caught.value)
    assert redact_value({"auth": KEY, "urls": [f"http://u:{PASSWORD}@h/v1"]}) == {"auth": "***", "urls": ["http://***@h/v1"]}
