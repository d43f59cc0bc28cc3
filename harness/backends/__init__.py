"""Backends. Each registers a lazy loader and its options model; importing this package imports
no ML library (the options models are pydantic only)."""

from harness.backends.base import (
    BACKEND_OPTIONS,
    BACKENDS,
    EMBEDDED_MODEL,
    Backend,
    Capabilities,
    ModelOptions,
    ModelSpec,
    backend_class,
    load_backend,
    option_problem,
    options_model,
    parse_model,
)
from harness.backends.hf.options import HFOptions
from harness.backends.openai.options import OpenAIOptions
from harness.backends.scripted import ScriptedOptions
from harness.backends.vllm.options import VLLMOptions

BACKENDS.add_reference("hf", "harness.backends.hf.backend:HFBackend")
BACKENDS.add_reference("openai", "harness.backends.openai.backend:OpenAIBackend")
BACKENDS.add_reference("scripted", "harness.backends.scripted:ScriptedBackend")
BACKENDS.add_reference("vllm", "harness.backends.vllm.backend:VLLMBackend")

BACKEND_OPTIONS.add("hf", HFOptions)
BACKEND_OPTIONS.add("openai", OpenAIOptions)
BACKEND_OPTIONS.add("scripted", ScriptedOptions)
BACKEND_OPTIONS.add("vllm", VLLMOptions)

__all__ = [
    "BACKENDS", "BACKEND_OPTIONS", "EMBEDDED_MODEL", "Backend", "Capabilities", "ModelOptions", "ModelSpec", "backend_class",
    "load_backend", "option_problem", "options_model", "parse_model",
]
