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

BACKENDS.add_reference("hf", "harness.backends.hf.backend:HFBackend")
BACKENDS.add_reference("openai", "harness.backends.openai.backend:OpenAIBackend")
BACKENDS.add_reference("scripted", "harness.backends.scripted:ScriptedBackend")

__all__ = ["BACKENDS", "EMBEDDED_MODEL", "Backend", "ModelSpec", "backend_class", "load_backend", "parse_model"]
