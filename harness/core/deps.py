"""Optional heavy dependencies: one check that names the pip extra that installs them."""

from __future__ import annotations

from harness.core.errors import HarnessError


def require(module: str, extra: str) -> None:
    """Import check with the pip command in the error, for optional heavy dependencies."""
    try:
        __import__(module)
    except ImportError:
        raise HarnessError(f"this needs the '{module}' package: pip install 'harness[{extra}]'") from None


def require_transformers() -> None:
    """torch and transformers, for the local Hugging Face backend and tuning."""
    require("torch", "hf")
    require("transformers", "hf")
