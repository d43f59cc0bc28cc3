"""A package's names imported on first use (its module ``__getattr__``, PEP 562): the package's face stays light, so
``harness --help`` and ``import harness.<module>`` do not load what only some verbs need."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: a name in ``where`` is imported from ``package.<where[name]>`` on first use and
    kept on the package; any other name is the usual AttributeError."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
