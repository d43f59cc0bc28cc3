"""One registry type for every pluggable kind: backends, metrics (and metric families),
selectors, filters and CLI verbs.

Built-ins register in code: an entry itself, or a ``"module:attr"`` reference imported on first
lookup (so ``harness tasks`` never imports torch). Third-party packages register through a Python
entry-point group (``harness.backends``...), read once on the first lookup or listing; a plugin is
imported only when its name is looked up, so a broken one fails only where it is used, as a
HarnessError that names its entry point and distribution. A plugin may not take a built-in's
name. Families (``maj@K``, ``evaluate:NAME``) build an entry for any name their pattern matches;
built members are cached apart from the names, so a lookup never registers anything.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from harness.core.errors import HarnessError, did_you_mean

T = TypeVar("T")

# what a looked-up plugin or reference object must be, as the registry's entry (raises TypeError/ValueError why not)
Accept = Callable[[object, str], T]


@dataclass(frozen=True)
class Family(Generic[T]):
    """Every name ``pattern`` fully matches builds its own entry (``maj@8`` -> a majority-of-8 metric)."""

    pattern: str
    build: Callable[[re.Match[str]], T]


@dataclass(frozen=True)
class Reference:
    """A built-in entry as ``"module:attr"``: imported on first lookup, so heavy modules load only when used."""

    target: str

    def load(self) -> object:
        module, _, attr = self.target.partition(":")
        value: object = importlib.import_module(module)
        for part in attr.split("."):
            value = getattr(value, part)
        return value


def entry_point_origin(point: EntryPoint) -> str:
    """Where a plugin comes from, for error messages: the entry point and its distribution."""
    dist = point.dist
    source = f"distribution '{dist.name} {dist.version}'" if dist is not None else "an unknown distribution"
    return f"entry point '{point.name} = {point.value}' (group '{point.group}') of {source}"


class Registry(Generic[T]):
    """Named entries of one kind; ``kind`` names it in messages, ``group`` is its entry-point group
    (None: no third-party entries), ``accept`` turns a loaded plugin or reference object into an entry."""

    def __init__(self, kind: str, group: str | None = None, accept: Accept[T] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._accept = accept
        self._entries: dict[str, T | Reference] = {}  # built-ins, in registration order
        self._families: list[Family[T]] = []
        self._members: dict[str, T] = {}  # family members built so far: a cache, not names
        self._plugins: dict[str, list[EntryPoint]] | None = None  # None: entry points not read yet
        self._loaded: dict[str, T] = {}

    # -- built-ins ----------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def add(self, name: str, entry: T) -> T:
        return self.register(name)(entry)

    def add_reference(self, name: str, target: str) -> None:
        """A built-in imported from ``"module:attr"`` on its first lookup (then passed through ``accept``)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Reference(target)

    def add_family(self, pattern: str, build: Callable[[re.Match[str]], T]) -> None:
        self._families.append(Family(pattern, build))

    # -- lookups ------------------------------------------------------------------------
    def get(self, name: str, where: str = "") -> T:
        plugins = self._plugin_points()
        if name in plugins:
            return self._plugin(name, plugins[name])
        if name in self._entries:
            return self._builtin(name)
        member = self._member(name)
        if member is not None:
            return member
        place = f"{where}: " if where else ""
        known = self.names()
        raise HarnessError(f"{place}unknown {self.kind} '{name}'.{did_you_mean(name, known)} Known {self.kind}s: {', '.join(known)}.")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._entries or name in self._plugin_points() or self._family(name) is not None

    def names(self) -> list[str]:
        """Every exact name, built-in and plugin (family members are not names)."""
        return sorted({*self._entries, *self._plugin_points()})

    def values(self) -> Iterator[T]:
        """The built-in entries in registration order (references imported), then the plugins by name."""
        for name in list(self._entries):
            yield self.get(name)
        for name in sorted(self._plugin_points()):
            if name not in self._entries:
                yield self.get(name)

    def reset_plugins(self) -> None:
        """Forget the entry points read (and the plugins loaded): the next lookup reads them again.
        For tests that install a plugin into a running process."""
        self._plugins = None
        self._loaded.clear()

    # -- internals ----------------------------------------------------------------------
    def _adapt(self, value: object, name: str) -> T:
        return self._accept(value, name) if self._accept is not None else cast(T, value)

    def _builtin(self, name: str) -> T:
        entry = self._entries[name]
        if isinstance(entry, Reference):
            entry = self._adapt(entry.load(), name)
            self._entries[name] = entry
        return entry

    def _family(self, name: str) -> tuple[Family[T], re.Match[str]] | None:
        for family in self._families:
            match = re.fullmatch(family.pattern, name)
            if match:
                return family, match
        return None

    def _member(self, name: str) -> T | None:
        if name in self._members:
            return self._members[name]
        found = self._family(name)
        if found is None:
            return None
        family, match = found
        member = family.build(match)
        self._members[name] = member
        return member

    def _plugin_points(self) -> dict[str, list[EntryPoint]]:
        if self._plugins is None:
            found: dict[str, list[EntryPoint]] = {}
            if self.group is not None:
                for point in entry_points(group=self.group):
                    points = found.setdefault(point.name, [])
                    if all(p.value != point.value for p in points):  # one distribution seen twice on sys.path
                        points.append(point)
            self._plugins = found
        return self._plugins

    def _plugin(self, name: str, points: list[EntryPoint]) -> T:
        if name in self._loaded:
            return self._loaded[name]
        if name in self._entries or self._family(name) is not None:
            raise HarnessError(f"{self.kind} '{name}' is built into harness; the plugin {entry_point_origin(points[0])} "
                               f"may not replace it: give the entry point another name")
        if len(points) > 1:
            raise HarnessError(f"{self.kind} '{name}' is provided by {len(points)} plugins: "
                               f"{'; '.join(entry_point_origin(p) for p in points)}. Uninstall all but one")
        (point,) = points
        try:
            value = point.load()
        except Exception as exc:  # any failure of third-party code: a message, not a traceback
            raise HarnessError(f"{self.kind} plugin '{name}' failed to load: {entry_point_origin(point)}: "
                               f"{type(exc).__name__}: {exc}") from exc
        try:
            entry = self._adapt(value, name)
        except (TypeError, ValueError) as exc:
            raise HarnessError(f"{self.kind} plugin '{name}' is not a usable {self.kind}: {entry_point_origin(point)}: {exc}") from None
        self._loaded[name] = entry
        return entry
