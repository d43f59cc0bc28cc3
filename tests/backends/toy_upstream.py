"""A tiny deterministic OpenAI-compatible HTTP server for the fast tests.

It speaks just enough of /v1/completions (with echo + logprobs) and /v1/chat/completions
for the retry, limiter, ordering and redaction logic to run over real HTTP in a second;
what the API *means* is tested against llama-cpp-python's server in the slow tests.
Tokens are whitespace-led words; a token's logprob is -len(token)/10.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = re.compile(r"\s*\S+|\s+$")


def tokenize(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group()) for m in TOKEN.finditer(text)]


def completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["prompt"]
    if body.get("echo"):
        tokens = tokenize(prompt)
        values: list[float | None] = [None] + [-len(t) / 10 for _, t in tokens[1:]]
        generated = " x"
        logprobs = {
            "tokens": [t for _, t in tokens] + [generated], "token_logprobs": values + [-0.1],
            "text_offset": [o for o, _ in tokens] + [len(prompt)],
            "top_logprobs": [None] + [{t: -len(t) / 10} for _, t in tokens[1:]] + [{generated: -0.1}],
        }
        choice = {"index": 0, "text": prompt + generated, "logprobs": logprobs, "finish_reason": "length"}
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1}
    else:
        choice = {"index": 0, "text": f" {len(prompt)}\nmore", "logprobs": None, "finish_reason": "stop"}
        usage = {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": 2, "total_tokens": 0}
    return {"id": "cmpl-toy", "object": "text_completion", "created": 0, "model": body["model"], "choices": [choice], "usage": usage}


def chat(body: dict[str, Any]) -> dict[str, Any]:
    last = body["messages"][-1]["content"]
    reply = "B" if "Options:" in last else f"{len(last)} chars"
    return {
        "id": "chat-toy", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ToyUpstream:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "toy", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._send(chat(body) if self.path.endswith("/chat/completions") else completion(body))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ToyUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
