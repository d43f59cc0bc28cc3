"""Optional heavy dependencies: one check that names the pip extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from harness.core.errors import HarnessError


def require(module: str, extra: str, package: str | None = None, what: str = "this") -> None:
    """Import check with the pip command in the error, for optional heavy dependencies.

    ``package`` is the distribution when it is named differently from the module
    (``rouge_score`` is ``rouge-score``); ``what`` names the feature that needs it.
    """
    try:
        __import__(module)
    except ImportError:
        alone = f" (or pip install {package})" if package else ""
        raise HarnessError(f"{what} needs the '{package or module}' package: pip install 'harness[{extra}]'{alone}") from None


def require_transformers() -> None:
    """Torch and transformers, for the local Hugging Face backend and tuning."""
    require("torch", "hf")
    require("transformers", "hf")


class LazyModule:
    """A module imported on its first attribute access: ``stats = LazyModule("scipy.stats")`` reads
    as the module everywhere, but ``import harness.stats`` no longer costs scipy.stats' second (every
    ``harness`` command paid it, ``--help`` included)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def preload(*modules: str) -> None:
    """Import ``modules`` now (what a ``LazyModule`` defers): a server imports what its pages need while it starts, so its
    first request does not pay the import (scipy.stats: about a second)."""
    for name in modules:
        importlib.import_module(name)
