"""harness: which prompt, few-shot setup or checkpoint is better, and is the difference real?

The Python API (``harness.load_results``, ``harness.compare``) is loaded lazily so
``import harness`` stays cheap. ``harness.compare`` is the ``harness.compare`` module made
callable (importing a submodule rebinds the package attribute, so a plain function of that
name could not survive); calling it is ``harness.api.compare``.
"""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load_results":
        return importlib.import_module("harness.api").load_results
    if name == "compare":
        return importlib.import_module("harness.compare")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
