"""Backends. Each registers a lazy loader; importing this package imports no ML library."""

from harness.backends.base import (
    BACKENDS,
    EMBEDDED_MODEL,
    Backend,
    ModelSpec,
    backend_class,
    load_backend,
    parse_model,
)


@BACKENDS.register("hf")
def _hf() -> type[Backend]:
    from harness.backends.hf.backend import HFBackend

    return HFBackend


@BACKENDS.register("openai")
def _openai() -> type[Backend]:
    from harness.backends.openai.backend import OpenAIBackend

    return OpenAIBackend


@BACKENDS.register("scripted")
def _scripted() -> type[Backend]:
    from harness.backends.scripted import ScriptedBackend

    return ScriptedBackend


__all__ = ["BACKENDS", "EMBEDDED_MODEL", "Backend", "ModelSpec", "backend_class", "load_backend", "parse_model"]
