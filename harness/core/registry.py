"""One registry type for every pluggable kind (backends, selectors, metrics, filters).

Plugins register themselves with a decorator at import time; lookups of an unknown name
raise a HarnessError listing what exists, with a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from harness.core.errors import HarnessError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind. ``kind`` is only used in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def add(self, name: str, entry: T) -> T:
        return self.register(name)(entry)

    def get(self, name: str, where: str = "") -> T:
        try:
            return self._entries[name]
        except KeyError:
            place = f"{where}: " if where else ""
            raise HarnessError(
                f"{place}unknown {self.kind} '{name}'.{did_you_mean(name, self._entries)} "
                f"Known {self.kind}s: {', '.join(sorted(self._entries))}."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)
