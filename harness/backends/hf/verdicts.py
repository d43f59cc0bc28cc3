"""The one-time exactness probes' verdicts, kept per model and software so a short run does not pay them again.

Why: before packed scoring and the chunked LM heads are used, each is checked against the reference path on a
probe (``packed.packing_verified``, ``ArgmaxHead.verified``): a few forward passes with the full 262k-token head,
about 2-3 s on the 2-core machine, a tenth of a 100-item run. A verdict depends only on what the model computes and
on the code that scores it, so it is stored under a key of exactly those: the model's identity (full-content
fingerprint of the folder and adapter, or a hub commit; dtype, max_length, remote code, device kind), the attention
implementation, the torch and transformers versions and the source of the scoring modules. Any change to one of them
is a new key, so the probe runs again. A model whose identity is not settled (a hub id not in the local cache) is
never cached; nor is a verdict the probe could not reach (it raised).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.paths import cache_dir

# the modules whose code a verdict vouches for: packed rows, the reference and prefix scorers, the heads, the caches
SCORING_MODULES = ("packed.py", "prefix_cache.py", "argmax_head.py", "shared_cache.py", "decode_cache.py", "greedy.py")


def verdict_key(identity: dict[str, Any], attention: str, versions: dict[str, str]) -> str | None:
    """A stable key for the verdicts of this model under this software, or None where it must not be cached."""
    if identity.get("revision_note"):
        return None
    here = Path(__file__).parent
    sources = {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in SCORING_MODULES}
    material = json.dumps({"identity": identity, "attention": attention, "versions": versions, "sources": sources}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def verdicts_dir() -> Path:
    return cache_dir() / "verdicts"


def cached_verdict(key: str | None, name: str, probe: Callable[[], bool]) -> bool:
    """The stored verdict ``name`` for ``key``, or the probe's, stored for next time (atomically: a reader sees the
    old file or the new one). An unreadable file is ignored and replaced; a cache that cannot be written is skipped."""
    if key is None:
        return probe()
    path = verdicts_dir() / f"{key}.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(name), bool):
        return bool(known[name])
    verdict = probe()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({**known, name: verdict}, sort_keys=True), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass
    return verdict
