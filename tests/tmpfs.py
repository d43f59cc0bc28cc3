"""A small tmpfs for the tests that need real storage limits (a full disk, no inodes left, read-only storage).

Mounting needs root (or passwordless sudo); where neither is available the test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount_command() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.skip("mounting a tmpfs needs root or passwordless sudo (neither here)")


def remount(path: Path, options: str) -> None:
    """Change a mounted tmpfs's options in place (size=..., nr_inodes=..., ro, rw): its files stay."""
    subprocess.run([*_mount_command(), "mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


@contextmanager
def tmpfs(path: Path, options: str = "size=1M") -> Iterator[Path]:
    """A fresh tmpfs mounted at ``path`` (made if missing) for the duration, e.g. options='size=128k,nr_inodes=8'."""
    prefix = _mount_command()
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", f"{options},mode=1777", "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()[:200]}")
    try:
        yield path
    finally:
        subprocess.run([*prefix, "umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only_view(source: Path, path: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``path`` (a read-only bind mount: even root cannot write through it)."""
    prefix = _mount_command()
    path.mkdir(parents=True, exist_ok=True)
    bound = subprocess.run([*prefix, "mount", "--bind", str(source), str(path)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"a bind mount is not permitted here: {bound.stderr.strip()[:200]}")
    try:
        subprocess.run([*prefix, "mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run([*prefix, "umount", "-l", str(path)], capture_output=True)
