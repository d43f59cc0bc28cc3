"""The viewer's in-process cache: what a page computed from the database (a run's comparison, the runs page's best
cells, an items page's score table), kept until the database file changes.

Every value is keyed on what asked for it and on the file's signature: the size and modification time of the
database and of its write-ahead log. Any write to the database (a run storing items, ``harness rescore`` or
``calibrate`` rewriting scores in place) changes the log or the file, so the next request recomputes: a page
never shows a stale number, at the price of recomputing after any write (a run in progress in the same file
keeps the caches cold). The cache holds at most ``size`` values per kind (``limits`` names other bounds for kinds of
small values: a page of runs needs 50 best cells), the least recently used going first, so memory stays bounded however
many pages are browsed. Nothing here writes the database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")


def file_signature(db: Path) -> tuple[int, ...]:
    """(size, mtime_ns) of the database and of its -wal file (zeros when there is none, or it is empty: a reader opening
    a WAL database may create an empty log and remove it on closing, which is no change to the data)."""
    out: list[int] = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            stat = path.stat()
            out += [stat.st_size, stat.st_mtime_ns] if stat.st_size else [0, 0]
        except OSError:
            out += [0, 0]
    return tuple(out)


class ViewCache:
    """Values computed from one database file, per kind (the first element of each key), ``size`` of each at most."""

    def __init__(self, db: Path, size: int = 8, limits: dict[Hashable, int] | None = None) -> None:
        self.db = db
        self.size = size
        self.limits = dict(limits or {})
        self._values: dict[Hashable, OrderedDict[Hashable, tuple[tuple[int, ...], Any]]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[Hashable, ...], compute: Callable[[], T], signature: tuple[int, ...] | None = None) -> T:
        """The cached value of ``key`` if the file has not changed since it was computed, else ``compute()`` (kept).
        ``signature``: the file's, read before the request read anything (so a write during ``compute`` is not missed)."""
        signature = file_signature(self.db) if signature is None else signature
        kind = key[0]
        with self._lock:
            entries = self._values.setdefault(kind, OrderedDict())
            found = entries.get(key)
            if found is not None and found[0] == signature:
                entries.move_to_end(key)
                self.hits += 1
                return cast(T, found[1])
        value = compute()
        with self._lock:
            self.misses += 1
            entries[key] = (signature, value)
            entries.move_to_end(key)
            while len(entries) > self.limits.get(kind, self.size):
                entries.popitem(last=False)
        return value
