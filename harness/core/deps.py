"""Optional heavy dependencies: one check that names the pip extra that installs them."""

from __future__ import annotations

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
