"""Writing files so that readers see the old or the new version, never half of one."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from harness.core.errors import HarnessError

TEMP_SUFFIX = ".tmp"  # a temp file is '.<name>.<random>.tmp' next to its target (stale_temps finds a killed writer's)
_STORAGE_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only storage",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


def write_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write a file so readers see the old or the new version, never half of one.

    The temp file is removed on any failure; the file gets the permissions a plain ``open`` would
    give (0666 less the umask). A full disk or unwritable folder is a HarnessError naming the path.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(line)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRORS:
            raise
        raise HarnessError(f"{_STORAGE_ERRORS[exc.errno]} while writing {path} ({exc.strerror}); nothing was left half-written") from None


def stale_temps(path: Path) -> list[Path]:
    """Temp files a killed ``write_atomic`` of ``path`` left behind."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}")) if path.parent.is_dir() else []
