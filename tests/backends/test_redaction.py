"""Credentials stay out of every message and everything stored, and a dead or hung server ends a run
in seconds, not minutes (issue 19). Real HTTP throughout: the toy upstream, a server that echoes the
key, a closed port.

The redaction functions are tested in tests/core/test_redaction.py; these tests check the openai backend and a CLI
run end to end: the SQLite database, config.json, items.jsonl, stderr and --json stdout."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.backends import ModelSpec, parse_model
from harness.backends.openai.backend import OpenAIBackend
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.core.redaction import redact_url
from harness.requests import GenerateRequest
from harness.store.store import Store
from tests.backends.toy_upstream import ToyUpstream

KEY = "sk-test-NEVER-WRITE-ME-4242"
QUERY_KEY = "qk-SECRET-in-the-query-7777"
PASSWORD = "pw-SECRET-in-userinfo-3131"


def leaked(text: str | bytes, secret: str = KEY, shortest: int = 8) -> bool:
    """Whether ``text`` holds ``secret`` or any prefix of it of at least ``shortest`` characters."""
    data = text.encode() if isinstance(text, str) else text
    return any(secret[:n].encode() in data for n in range(shortest, len(secret) + 1))


@pytest.fixture
def toy() -> Iterator[ToyUpstream]:
    with ToyUpstream() as upstream:
        yield upstream


def backend(base_url: str | list[str], **fields: object) -> OpenAIBackend:
    return OpenAIBackend(parse_model("openai:toy").model_copy(update={"base_url": base_url, **fields}))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- identity ------------------------------------------------------------------------------------
def test_the_identity_has_no_secret_and_does_not_change_with_the_key() -> None:
    def identity(key: str) -> dict[str, Any]:
        spec = parse_model("openai:m").model_copy(update={
            "base_url": f"http://u:{key}@127.0.0.1:9/v1?api-key={key}&api-version=7", "extra_headers": {"X-Api-Key": key},
            "extra_params": {"api_key": key, "top_k": 3}})
        return OpenAIBackend.identity_of(spec)

    assert identity(KEY) == identity("sk-another-key-0000")
    assert not leaked(json.dumps(identity(KEY)))
    assert identity(KEY)["base_url"] == "http://127.0.0.1:9/v1?api-key=***&api-version=7"
    assert identity(KEY)["extra_params"] == {"api_key": "***", "top_k": 3}


# -- messages ---------------------------------------------------------------------------------
class EchoingServer:
    """Answers every call 401 with a message of ``pad`` x's and then the Authorization header it got:
    a key echoed at any distance from the backend's 500-character cut."""

    def __init__(self) -> None:
        self.pad = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"error": {"message": "x" * server.pad + str(self.headers.get("Authorization"))}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def test_a_key_the_server_echoes_at_the_cut_is_never_printed_in_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server = EchoingServer()
    try:
        api = backend(server.url)
        for pad in range(380, 520, 3):  # the cut falls before, inside and after the key
            server.pad = pad
            with pytest.raises(HarnessError) as caught:
                api.generate([GenerateRequest("p")])
            assert not leaked(str(caught.value)), pad
            assert "***" in str(caught.value) or "..." in str(caught.value)
        api.close()
    finally:
        server.close()


def test_the_backends_own_message_is_redacted_before_it_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    api = backend(f"http://u:{PASSWORD}@127.0.0.1:9/v1?api-key={QUERY_KEY}", extra_headers={"X-Api-Key": "hdr-SECRET-0001"})
    for pad in range(470, 510):
        for secret in (KEY, QUERY_KEY, PASSWORD, "hdr-SECRET-0001"):
            said = api._describe_error(Exception("x" * pad + secret + " and more"))
            assert not leaked(said, secret), (pad, secret)


# -- nothing stored ------------------------------------------------------------------------------
def stored_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_a_key_in_the_base_url_query_and_userinfo_is_sent_but_stored_nowhere(
    toy: ToyUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "results" / "harness.db"
    url = toy.url.replace("http://", f"http://user:{PASSWORD}@") + f"/v1?api-key={QUERY_KEY}&api-version=2024-02-01"

    def run(url: str) -> dict[str, Any]:
        argv = ["run", "--task", "capitals", "arithmetic", "--limit", "3", "--model", "openai:toy", "--base-url", url, "--db", str(db),
                "--quiet", "--json"]
        assert main(argv) == 0
        out, err = capsys.readouterr()
        for secret in (KEY, QUERY_KEY, PASSWORD):
            assert not leaked(out, secret) and not leaked(err, secret)
        return dict(json.loads(out))

    first = run(url)
    assert first["backend_requests"] > 0
    # the query reached the server on the right path (the client would append the path after the query)
    assert toy.paths and all(p.startswith("/v1/") and p.endswith(f"?api-key={QUERY_KEY}&api-version=2024-02-01") for p in toy.paths)
    written = stored_bytes(tmp_path)
    assert any(p.name == "config.json" for p, _ in written) and any(p.suffix == ".jsonl" for p, _ in written) and db.is_file()
    for path, data in written:
        for secret in (KEY, QUERY_KEY, PASSWORD):
            assert not leaked(data, secret), (path, secret)
    config = next(json.loads(data) for p, data in written if p.name == "config.json")
    assert "api-key=***" in json.dumps(config) and "api-version=2024-02-01" in json.dumps(config)  # the server is still told apart
    store = Store(db)
    try:
        runs = store.runs()
        cells = store.cells([r.id for r in runs])
    finally:
        store.close()
    assert len(runs) == 1 and cells and all(c.model_json["base_url"] == redact_url(url) for c in cells)
    assert "api-key=***" in json.dumps(runs[0].config) and not leaked(json.dumps(runs[0].config), QUERY_KEY)
    # a new key for the same server: the same identity, so everything comes from the cache
    again = run(url.replace(QUERY_KEY, "qk-a-rotated-key-0000").replace(PASSWORD, "pw-rotated"))
    assert again["backend_requests"] == 0 and again["cache_hits"] == again["requests"] > 0


def test_library_log_lines_are_redacted(toy: ToyUpstream, caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request's URL at info level: with a key in the query, that would print it."""
    api = backend(f"{toy.url}/v1?api-key={QUERY_KEY}")
    with caplog.at_level(logging.INFO, logger="httpx2"), caplog.at_level(logging.INFO, logger="httpx"):
        api.generate([GenerateRequest("p")])
    api.close()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert lines and any("api-key=***" in line for line in lines)
    assert not any(leaked(line, QUERY_KEY) for line in lines)


def test_credential_headers_and_parameters_are_sent_but_not_stored(toy: ToyUpstream, tmp_path: Path) -> None:
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec

    model = ModelSpec(backend="openai", model="toy", base_url=f"{toy.url}/v1", extra_headers={"X-Api-Key": KEY, "X-Team": "evals"},
                      extra_params={"api_key": QUERY_KEY, "top_k": 3, "extra_body": {"repetition_penalty": 1.1}})
    spec = ExperimentSpec(tasks=["arithmetic"], prompts=["question"], models=[model], limit=2)
    summary = run_experiment(spec, Store(tmp_path / "h.db"), show_progress=False)
    assert summary.items_written == 2
    # a server's own parameters reach it, an extra_body of the entry's own merged in
    assert toy.bodies and all(b["api_key"] == QUERY_KEY and b["top_k"] == 3 and b["repetition_penalty"] == 1.1 for b in toy.bodies)
    for path, data in stored_bytes(tmp_path):
        assert not leaked(data) and not leaked(data, QUERY_KEY), path
    config = (summary.run_dir / "config.json").read_text()
    assert "evals" in config and '"top_k": 3' in config


# -- give-up times -------------------------------------------------------------------------------
def test_a_dead_endpoint_fails_the_run_in_seconds_naming_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    code = main(["run", "--task", "arithmetic", "--limit", "3", "--model", "openai:toy", "--base-url", url, "--db", str(tmp_path / "h.db"),
                 "--quiet"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 30, (code, elapsed)  # start-up and planning included, on a busy machine
    assert f"cannot connect to {url}" in err and "Is the server running" in err and "Traceback" not in err
    spent = re.search(r"giving up after \d+ attempts in ([0-9.]+) s", err)
    assert spent is not None and float(spent.group(1)) < 5, err  # the backend's own time on it


def test_every_endpoint_dead_from_the_start_fails_in_seconds() -> None:
    urls = [f"http://127.0.0.1:{closed_port()}/v1", f"http://127.0.0.1:{closed_port()}/v1"]
    api = backend(urls, max_retries=50)  # the retry budget is not what ends it
    started = time.monotonic()
    with pytest.raises(HarnessError, match="cannot connect to .*Is the server running"):
        api.generate([GenerateRequest(f"p{i}") for i in range(8)])
    api.close()
    assert time.monotonic() - started < 8


def test_a_hung_server_costs_at_most_the_retry_deadline(toy: ToyUpstream) -> None:
    toy.hang = True
    api = backend(f"{toy.url}/v1", timeout_s=30.0, max_retry_time_s=2.0)
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"giving up after \d+ attempts in [0-9.]+ s \(max_retry_time_s: 2\)"):
        api.generate([GenerateRequest("p")])
    assert time.monotonic() - started < 6
    toy.hang = False
    api.close()


def test_a_server_that_never_accepts_costs_the_connect_timeout_not_the_read_timeout() -> None:
    """A full accept queue drops the SYN, as a firewalled or vanished host does: the attempt ends at
    ``connect_timeout_s`` (0.5 s here), not at the 30 s ``timeout_s`` a slow answer is allowed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        time.sleep(0.2)
        api = backend(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.5, timeout_s=30.0, max_retries=1)
        started = time.monotonic()
        with pytest.raises(HarnessError, match=r"giving up after 2 attempts .*last error \(timeout\)"):
            api.generate([GenerateRequest("p")])
        assert time.monotonic() - started < 6
        api.close()
        for sock in queued:
            sock.close()


def test_the_new_options_at_their_defaults_leave_the_stored_record_as_it_was() -> None:
    spec = ModelSpec(backend="openai", model="x")
    record = spec.model_dump(mode="json")
    assert "max_retry_time_s" not in record and "connect_timeout_s" not in record
    changed = ModelSpec(backend="openai", model="x", max_retry_time_s=30, connect_timeout_s=1)
    assert changed.model_dump(mode="json")["max_retry_time_s"] == 30
    assert ModelSpec.model_validate(changed.model_dump(mode="json")) == changed


# -- refused before a run is made --------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "said"), [
    (["--model", "openai:x", "--base-url", "notaurl"], "--base-url 'notaurl' is not an http(s) URL with a host"),
    (["--model", "openai:x", "--base-url", "ftp://h/v1"], "is not an http(s) URL"),
    (["--model", "openai:x", "--base-url", f"http://h:99999/v1?api-key={QUERY_KEY}"], "has a port that is not a number"),
    (["--model", "openai:gpt-4o"], "no API key for https://api.openai.com/v1: set $OPENAI_API_KEY"),
    (["--model", "hff:foo"], "unknown backend 'hff'. Did you mean 'hf'?"),
    (["--model", "hf:/no/such/folder"], "model '/no/such/folder' is not a folder"),
], ids=["notaurl", "ftp", "bad-port", "no-key", "backend-typo", "bad-hf-path"])
def test_bad_models_are_refused_before_a_run_is_made(
    argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    db = tmp_path / "h.db"
    assert main(["run", "--task", "arithmetic", "--limit", "2", "--db", str(db), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and not leaked(err, QUERY_KEY)
    if db.exists():
        store = Store(db)
        try:
            assert store.runs() == []
        finally:
            store.close()
