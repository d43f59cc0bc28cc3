"""Where harness keeps files of its own outside the project: converted models, file-hash memos."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where harness keeps converted models: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"
