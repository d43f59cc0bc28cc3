"""An HF-format model's files, told without loading it: where they are (the embedded model is
converted on first use), what they hold (a full-content fingerprint in three parts) and whether
its tokenizer has a chat template. Shared by ``hf:`` and ``vllm:``, which load the same folders,
so both name a model's content the same way in their identities.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.backends.base import EMBEDDED_MODEL, Capabilities, ModelSpec
from harness.backends.hf.embedded import embedded_model_path
from harness.core.errors import HarnessError
from harness.core.fingerprint import content_sha256, open_memo, read_sha256

# Top-level files of a model or adapter folder that never change outputs: notes, licences,
# harness's tuning card, Trainer state. Every other top-level file is part of the fingerprint
# (from_pretrained reads only the top level; checkpoint-*/ subfolders are not the model).
_INERT_FILES = {"tune_card.json", "training_args.bin", "trainer_state.json", "optimizer.pt", "scheduler.pt", "scaler.pt"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".npz", ".index.json")
_TOKENIZER_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "chat_template", "vocab", "merges", "spiece", "sentencepiece")
_SMALL_FILE = 1 << 20  # read directly; larger files go through the on-disk memo


def _fingerprint_part(name: str) -> str | None:
    """Which part of a folder's fingerprint a file belongs to; None for files that never change outputs."""
    if name.startswith(".") or name.lower().endswith(".md") or name in _INERT_FILES or name.startswith("rng_state"):
        return None
    if name.upper().startswith(("LICENSE", "NOTICE", "USE_POLICY")):
        return None
    if name.endswith(_WEIGHT_SUFFIXES):
        return "weights"
    if name.startswith(_TOKENIZER_PREFIXES) or name.endswith((".model", ".tiktoken")):
        return "tokenizer"  # tokenizer.json/_config.json (chat template, max length), sentencepiece, chat_template.jinja/json
    return "config"  # config.json, generation_config.json (eos ids), adapter_config.json, remote code (*.py)


def folder_fingerprint(path: Path) -> dict[str, str | None]:
    """Full-content sha256 of a local model/adapter folder, in three parts: weights, tokenizer
    (tokenizer files and chat template) and config (everything else that is loaded).

    Each part hashes its files' names and full-content sha256; weight files are read once and
    memoised (``base.content_sha256``), so a 1 GB model costs a few ``stat`` calls on every
    later start. A part with no files is None.
    """
    parts: dict[str, Any] = {}
    memo = open_memo()
    try:
        for file in sorted(path.iterdir()):
            part = _fingerprint_part(file.name)
            if part is None or not file.is_file():
                continue
            digest = read_sha256(file) if file.stat().st_size < _SMALL_FILE else content_sha256(file, memo)
            parts.setdefault(part, hashlib.sha256()).update(f"{file.name}\x00{digest}\n".encode())
    finally:
        if memo is not None:
            memo.close()
    return {part: parts[part].hexdigest() if part in parts else None for part in ("weights", "tokenizer", "config")}


def hub_commit(model: str, revision: str | None) -> str | None:
    """The commit a hub id (at ``revision``, default main) resolves to in the local Hugging Face
    cache, without any network access; None where it is not cached there."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # not a valid repo id, no huggingface_hub: nothing to resolve
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def device_kind(device: str) -> str:
    """'cuda:1' -> 'cuda': the kind of device decides the numerics, not its index."""
    return device.partition(":")[0]


def model_source(spec: ModelSpec) -> str:
    """Local folder or hub id to load; the embedded model is converted on first use."""
    if spec.model == EMBEDDED_MODEL:

        return str(embedded_model_path())
    return spec.model


# Where a tokenizer's chat template can be: a key of tokenizer_config.json, or (transformers >= 4.51
# saves it so) a file beside it; named extra templates in a folder of their own.
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
CHAT_TEMPLATE_FOLDER = "additional_chat_templates"


def _config_declares_template(path: Path) -> bool:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def has_chat_template(spec: ModelSpec) -> bool | None:
    """Whether the model's tokenizer has a chat template, told from its files without loading
    weights or tokenizer (a base model such as the embedded Gemma 3 270M has none). None when it
    cannot be told: a hub id whose tokenizer files are not in the local Hugging Face cache."""
    source = Path(model_source(spec))
    if source.is_dir():
        return (
            _config_declares_template(source / "tokenizer_config.json")
            or any((source / name).is_file() for name in CHAT_TEMPLATE_FILES)
            or (source / CHAT_TEMPLATE_FOLDER).is_dir()
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        revision = hub_commit(spec.model, spec.revision) or spec.revision
        found = {name: try_to_load_from_cache(spec.model, name, revision=revision) for name in ("tokenizer_config.json", *CHAT_TEMPLATE_FILES)}
    except (ImportError, ValueError):  # no huggingface_hub, not a valid repo id: nothing to tell
        return None
    if isinstance(found["tokenizer_config.json"], str) and _config_declares_template(Path(found["tokenizer_config.json"])):
        return True
    if any(isinstance(found[name], str) for name in CHAT_TEMPLATE_FILES):
        return True
    known_missing = all(value is not None and not isinstance(value, str) for name, value in found.items() if name != "tokenizer_config.json")
    return False if isinstance(found["tokenizer_config.json"], str) and known_missing else None


def check_hub_id(model: str) -> None:
    """Refuse, at planning, a model that is neither a local folder nor shaped like a hub id
    (``name`` or ``namespace/name``): a path such as ``/no/such/folder`` or ``./m``, so a typo is
    said before a run is made, not by the loader after it."""
    shown = model if len(model) <= 200 else f"{model[:200]}..."
    path = Path(model).expanduser()
    if path.is_file():
        raise HarnessError(f"model '{shown}' is a file; a local model is a folder (config.json, weights, tokenizer files)")
    looks_like_path = model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1 or model.endswith("/")
    if looks_like_path or not model.strip():
        raise HarnessError(
            f"model '{shown}' is not a folder (no such directory) and not a hub id (name or namespace/name); "
            "give an existing model folder or a Hugging Face hub id"
        )


def check_model_folder(folder: Path, model: str) -> None:
    """Refuse, at planning, a folder that is no Hugging Face model (no config.json): a task folder or a
    typo'd path that exists, said here instead of by the tokenizer loader's traceback after a run was made."""
    if (folder / "config.json").is_file():
        return
    shown = model if len(model) <= 200 else f"{model[:200]}..."
    if (folder / "adapter_config.json").is_file():
        raise HarnessError(f"model '{shown}' is a PEFT adapter folder (adapter_config.json, no config.json): give its base model as "
                           f"--model and this folder as --adapter (or 'adapter:' in the model's entry)")
    raise HarnessError(f"model '{shown}' is a folder without config.json, so not a Hugging Face model folder "
                       "(config.json, weights, tokenizer files); give a model folder or a hub id")


def content_identity(spec: ModelSpec, adapter: str | None) -> dict[str, Any]:
    """The part of an identity that names what is loaded: the backend, the model as given, the
    folder's content (``folder_fingerprint``) or a hub id's commit in the local HF cache, and the
    adapter folder's content. The backends add the settings that change their numbers."""
    source = Path(model_source(spec))
    folder = Path(adapter) if adapter else None
    if folder is not None and not folder.is_dir():
        raise HarnessError(f"adapter '{adapter}' is not a folder")
    if folder is not None and not (folder / "adapter_config.json").is_file():
        raise HarnessError(f"adapter '{adapter}' is not a PEFT adapter folder (no adapter_config.json)")
    identity: dict[str, Any] = {"backend": spec.backend, "model": spec.model}
    if not source.is_dir():
        check_hub_id(spec.model)
    if source.is_dir():
        check_model_folder(source, spec.model)
        identity["model_content"] = folder_fingerprint(source)
    else:
        commit = hub_commit(spec.model, spec.revision)
        identity["revision"] = commit or spec.revision or "main"
        if commit is None:
            identity["revision_note"] = "not in the local Hugging Face cache: the requested revision, not a resolved commit"
    identity["adapter"] = folder_fingerprint(folder) if folder else None
    return identity


def chat_capabilities(spec: ModelSpec, *, chat: bool) -> Capabilities:
    """Everything, except chat prompts on a model whose tokenizer has no chat template (told from
    its files, ``has_chat_template``; where that cannot be told, loading the model says so)."""
    if chat and has_chat_template(spec) is False:
        where = "the embedded base model" if spec.model == EMBEDDED_MODEL else model_source(spec)
        return Capabilities(prompt=False, why={"prompt": (
            f"has no chat template (none in {where}: no 'chat_template' in tokenizer_config.json, no chat_template.jinja), "
            "so it cannot take a chat prompt; use a plain-text template (*.jinja) with it, or a model that has a chat template"
        )})  # fmt: skip
    return Capabilities()
