"""An HTTP proxy for tests that forwards to a real server and injects faults.

Which calls fail is decided by a hash of (seed, request body, attempt number), not by
timing: attempt ``n`` of a given body fails when ``n < max_consecutive`` and the hash falls
below ``fraction``. So a run is reproducible whatever the concurrency, every request
eventually gets through (within the client's retry budget), and the number of injected
faults is known exactly, to compare with the retries the client reports.

Faults: 429 with Retry-After, 500, 503, a hang past the client's timeout, a dropped
connection (no response at all), and a 200 whose JSON body is cut in half.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("429", "500", "503", "hang", "drop", "truncate")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class ProxyLog:
    calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    forwarded: list[dict[str, Any]] = field(default_factory=list)  # {"path", "body"} of calls that reached the server

    @property
    def fault_total(self) -> int:
        return sum(self.faults.values())


class FaultProxy:
    """``with FaultProxy(upstream, fraction=0.5) as proxy: proxy.base_url``"""

    def __init__(
        self, upstream: str, fraction: float = 0.0, *, seed: int = 0, kinds: tuple[str, ...] = FAULTS,
        max_consecutive: int = 2, hang_s: float = 4.0, retry_after: str = "1", echo_auth_status: int | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.fraction, self.seed, self.kinds = fraction, seed, kinds
        self.max_consecutive, self.hang_s, self.retry_after = max_consecutive, hang_s, retry_after
        self.echo_auth_status = echo_auth_status  # answer every call with this status, echoing the Authorization header
        self.log = ProxyLog()
        self.in_flight = 0
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Until no call is being handled (e.g. one a killed client left behind)."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    def reset(self) -> None:
        with self._lock:
            self.log = ProxyLog()
            self._attempts.clear()

    def decide(self, body: bytes) -> str | None:
        key = hashlib.sha256(body).hexdigest()
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            self.log.calls += 1
            if attempt < self.max_consecutive and _unit(self.seed, key, attempt) < self.fraction:
                kind = self.kinds[int(_unit(self.seed, key, attempt, "kind") * len(self.kinds))]
                self.log.faults[kind] += 1
                return kind
        return None

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=600)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                status, _, body = proxy.forward("GET", self.path, b"", {})
                self._reply(status, body)

            def do_POST(self) -> None:
                with proxy._lock:
                    proxy.in_flight += 1
                try:
                    self._post()
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            def _post(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.echo_auth_status is not None:
                    message = {"error": {"message": f"invalid credentials: {self.headers.get('Authorization')}"}}
                    self._reply(proxy.echo_auth_status, json.dumps(message).encode())
                    return
                fault = proxy.decide(body)
                if fault in ("429", "500", "503"):
                    extra = {"Retry-After": proxy.retry_after} if fault == "429" else {}
                    self._reply(int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode(), extra)
                    return
                if fault in ("hang", "drop"):
                    if fault == "hang":
                        time.sleep(proxy.hang_s)
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                headers = {"Content-Type": "application/json"}
                status, _, answer = proxy.forward("POST", self.path, body, headers)
                with proxy._lock:
                    proxy.log.forwarded.append({"path": self.path, "body": json.loads(body)})
                if fault == "truncate":
                    answer = answer[: len(answer) // 2]
                self._reply(status, answer)

        return Handler
