"""A tiny deterministic OpenAI-compatible HTTP server for the fast tests.

It speaks just enough of /v1/completions (with echo + logprobs) and /v1/chat/completions
for the retry, limiter, ordering and redaction logic to run over real HTTP in a second;
what the API *means* is tested against llama-cpp-python's server in the slow tests.
Tokens are whitespace-led words; a token's logprob is -len(token)/10, less a tiny amount (under
1e-8) drawn from a hash of the text up to and including it, and a generation names a hash of
its prompt: so every request gets an answer of its own, and a client that hands one request
another's answer (after a retry, a hedge, a reordering) is caught by comparing answers with
``generated_text`` / ``loglikelihood_of``, or with a clean run.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = re.compile(r"\s*\S+|\s+$")


def tokenize(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group()) for m in TOKEN.finditer(text)]


def tag(text: str) -> str:
    """A short hash of ``text``: what makes each answer unique to its request."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def token_logprob(prompt: str, offset: int, token: str) -> float:
    """The toy's logprob of ``token`` at ``offset`` in ``prompt``: -len/10, less a hash of the
    prefix through the token (causal, as a model's is) times 1e-8."""
    jitter = int(tag(prompt[: offset + len(token)]), 16) / 16**10
    return -len(token) / 10 - jitter * 1e-8


def generated_text(prompt: str) -> str:
    """What the toy generates for a text prompt: its length and its hash, then a second line."""
    return f" {len(prompt)} {tag(prompt)}\nmore"


def chat_reply(last: str) -> str:
    """What the toy answers a chat; "B" to a multiple-choice question (the fallback's format)."""
    return "B" if "Options:" in last else f"{len(last)} chars {tag(last)}"


def loglikelihood_of(context: str, continuation: str) -> float:
    """What the backend must make of the toy's echo: the sum over the tokens that end after the
    context (its trailing spaces count with the continuation)."""
    text, boundary = context + continuation, len(context.rstrip(" "))
    return sum(token_logprob(text, o, t) for o, t in tokenize(text)[1:] if o < len(text) and o + max(len(t), 1) > boundary)


def completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["prompt"]
    if body.get("echo"):
        tokens = tokenize(prompt)
        values: list[float | None] = [None] + [token_logprob(prompt, o, t) for o, t in tokens[1:]]
        generated = " x"
        logprobs = {
            "tokens": [t for _, t in tokens] + [generated], "token_logprobs": values + [-0.1],
            "text_offset": [o for o, _ in tokens] + [len(prompt)],
            "top_logprobs": [None] + [{t: v} for (_, t), v in zip(tokens[1:], values[1:])] + [{generated: -0.1}],
        }
        choice = {"index": 0, "text": prompt + generated, "logprobs": logprobs, "finish_reason": "length"}
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1}
    else:
        choice = {"index": 0, "text": generated_text(prompt), "logprobs": None, "finish_reason": "stop"}
        usage = {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": 2, "total_tokens": 0}
    return {"id": "cmpl-toy", "object": "text_completion", "created": 0, "model": body["model"], "choices": [choice], "usage": usage}


def chat(body: dict[str, Any]) -> dict[str, Any]:
    reply = chat_reply(body["messages"][-1]["content"])
    return {
        "id": "chat-toy", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ToyUpstream:
    """``delay_s`` slows every answer; ``die_after=N`` makes the server die on its N+1th call, as a
    SIGKILLed one does: that call's connection is dropped without an answer and the port is closed;
    ``hang`` holds every call (a stopped process). ``calls`` counts the POSTs that arrived, ``paths``
    holds their paths (with any query) and ``bodies`` their JSON."""

    def __init__(self, *, delay_s: float = 0.0, die_after: int | None = None) -> None:
        self.delay_s, self.die_after, self.hang, self.calls, self.dead = delay_s, die_after, False, 0, False
        self.paths: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        toy = self

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
                with toy._lock:
                    toy.calls += 1
                    toy.paths.append(self.path)
                    toy.bodies.append(body)
                    dies = toy.dead or (toy.die_after is not None and toy.calls > toy.die_after)
                    if dies and not toy.dead:
                        toy.dead = True
                        threading.Thread(target=toy.kill, daemon=True).start()
                if dies:
                    self.close_connection = True
                    return
                while toy.hang:
                    time.sleep(0.05)
                time.sleep(toy.delay_s)
                path = self.path.partition("?")[0]
                if not path.endswith(("/completions", "/chat/completions")):
                    self.send_error(404, f"no such endpoint: {path}")
                    return
                self._send(chat(body) if path.endswith("/chat/completions") else completion(body))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_: None  # type: ignore[method-assign]  # a client that hung up (a cancelled hedge)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def kill(self) -> None:
        """Stop accepting connections (later calls are refused); in-flight ones are dropped."""
        self.dead = True
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ToyUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.hang = False
        if not self.dead:
            self.kill()
