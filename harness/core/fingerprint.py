"""Full-content sha256 of files, memoised on disk so a 1 GB checkpoint is read once.

A model's identity (what the response cache, the run identity and ``model_json`` hold) must
describe its *content*, not its name; task, data and template files are hashed the same way.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from harness.core.paths import cache_dir

FINGERPRINT_DB = "fingerprints.sqlite"


def read_sha256(path: Path) -> str:
    """The sha256 of a file's whole content (the slow part that the memo saves)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def open_memo() -> sqlite3.Connection | None:
    """The memo of file hashes under harness's cache dir; None where it cannot be opened (read-only home...)."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(folder / FINGERPRINT_DB, timeout=30, isolation_level=None)
        db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
            "ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL)"
        )
        return db
    except (OSError, sqlite3.Error):
        return None


def content_sha256(path: Path | str, memo: sqlite3.Connection | None = None) -> str:
    """Full-content sha256 of a file, memoised by (absolute path, size, mtime_ns, ctime_ns, inode).

    Any change of size, modification time, status-change time or inode (a rewrite, a
    replacement, ``touch``) re-reads the file; ctime cannot be set back by tools that restore
    mtimes (``cp -p``, rsync), so a rewrite that keeps size and mtime is still noticed. A file
    that changes while it is read is not memoised. Without a usable memo it is read every time.
    """
    file = Path(path).resolve()  # a symlink (HF cache snapshots) is memoised by its target
    before = file.stat()
    db = memo if memo is not None else open_memo()
    try:
        if db is not None:
            try:
                row = db.execute("SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM files WHERE path = ?", (str(file),)).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None and tuple(row[:4]) == stat_key(before):
                return str(row[4])
        digest = read_sha256(file)
        if db is not None and stat_key(file.stat()) == stat_key(before):
            try:
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", (str(file), *stat_key(before), digest))
            except sqlite3.Error:
                pass
        return digest
    finally:
        if db is not None and memo is None:
            db.close()
