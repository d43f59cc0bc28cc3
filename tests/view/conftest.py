"""A results database for the viewer's tests, made by real runs on scripted backends: the toy
multiple-choice task on two ``skilled:`` models (cells that differ and cells that do not), a generate
task whose model answers with HTML (``hostile:``), and a failed run with its reason."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.requests import GenerateRequest, GenerateResult
from harness.store import Store
from harness.view import create_app
from tests.decide_support import toy_task
from tests.helpers import cli, write_task

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
FAILURE = "backend failed: <b>connection reset</b> & gone"


class Hostile(ScriptedBackend):
    """Answers every prompt with markup that would run if a page pasted it in unescaped."""

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        return [GenerateResult(text=f" {SCRIPT} {IMG}\n", n_tokens=9) for _ in requests]


if "hostile" not in BACKENDS:
    BACKENDS.add("hostile", lambda: Hostile)


@dataclass(frozen=True)
class Stored:
    db: Path
    toy: str  # the toy run (8 cells: 2 prompts x 2 shot counts x 2 models)
    hostile: str  # the generate run with HTML outputs
    failed: str  # a run marked failed


def _latest(db: Path) -> str:
    store = Store.open_read_only(db)
    try:
        return store.resolve_run("latest")
    finally:
        store.close()


@pytest.fixture(scope="session")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    root = tmp_path_factory.mktemp("view")
    db = root / "results" / "harness.db"
    toy_task(root / "tasks", rows=60)
    assert cli("run", "--db", db, "--tasks-dir", root / "tasks", "--task", "toy", "--shots", "0", "2",
               "--model", "skilled:0.85", "--model", "skilled:0.35", "--quiet") == 0
    toy = _latest(db)
    write_task(root / "tasks", "echo", rows=6,
               spec={"type": "generate", "choices": None, "target": "{{ options[answer] }}", "metrics": ["exact_match"]},
               templates={"plain": "Q: {{ input }}\nA:"})
    assert cli("run", "--db", db, "--tasks-dir", root / "tasks", "--task", "echo", "--model", "hostile:html", "--quiet") == 0
    hostile = _latest(db)
    store = Store(db)
    try:
        store.create_run("20990101-000000-failed", "f" * 64, {"spec": {"tasks": ["toy"], "seed": 7}}, {"harness": "test"}, 7)
        store.fail_run("20990101-000000-failed", FAILURE)
    finally:
        store.close()
    return Stored(db, toy, hostile, "20990101-000000-failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(db: Path) -> Iterator[str]:
    """The real app on ``db`` under uvicorn on a free loopback port, in a thread: its base URL; stopped on the way out."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(db, "127.0.0.1"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(stored: Stored) -> Iterator[str]:
    """The real app on the shared store: its base URL."""
    with serving(stored.db) as url:
        yield url


@contextmanager
def view_command(db: Path) -> Iterator[str]:
    """``harness view --db DB --port 0`` in a subprocess (the real command, this checkout on its path): the address it
    printed; terminated on the way out."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "view", "--db", str(db), "--port", "0"], cwd=root,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/", proc.stderr.readline())
        assert found, "harness view printed no address"
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fetch(url: str, timeout: float) -> str:
    """The page at ``url``, retried while the server is not answering yet (up to about 5 s)."""
    for _ in range(100):
        try:
            return str(urllib.request.urlopen(url, timeout=timeout).read().decode())
        except urllib.error.URLError:
            time.sleep(0.05)
    return ""


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """Debian's chromium driven by playwright (``executable_path``: no browser is downloaded)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by scripts/test.sh")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield instance
        instance.close()
