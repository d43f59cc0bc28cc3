"""The backend seam: one ABC, two request kinds, a registry of lazy factories, and the model entry.

A backend never sees tasks, templates or metrics, only typed requests; that is what lets
the runner cache, resume and batch identically for a local HF model and a remote API.
Factories import their heavy dependencies lazily, so ``harness tasks`` works without torch
and a missing extra is reported as the pip command that installs it.

A model entry (``ModelSpec``) is a few common fields plus the options of its backend, each
backend's own pydantic model with ``extra="forbid"`` (``BACKEND_OPTIONS``): ``hf:`` refuses
``base_url`` and says it is an option of ``openai:``, instead of silently ignoring it. The
options models are light modules, so checking an entry never imports the backend itself.

What a model can do (``Capabilities``) is declared by its backend class from the spec and its
files, without loading it, and checked by planning for every cell before any cell runs.

A backend's identity (``identity_of``) is what the response cache keys, the run identity
(resume, ``harness ab`` reuse) and every cell's ``model_json`` hold, so it must describe the
model's *content*, not its name: ``content_sha256`` gives the full sha256 of a file, memoised
on disk by (path, size, mtime, ctime, inode) so a 1 GB checkpoint is read once, not on every
start.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, ValidationError, model_serializer, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import Self

from harness.core.errors import HarnessError, did_you_mean
from harness.core.registry import Registry
from harness.core.yamlfile import format_validation_error
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

EMBEDDED_MODEL = "gemma-3-270m"


class ModelOptions(BaseModel):
    """The keys of a model entry that belong to its backend. Each backend subclasses it; a key
    it does not declare (another backend's, or a misspelt one) is refused, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # whether ``backend:`` with no model name means the embedded model (a local backend loads it); an API's
    # server serves what it serves, so sending it the embedded model's name unasked would be a guess
    embedded_by_default: ClassVar[bool] = True


# name -> the backend's options model, registered beside its loader (backends/__init__.py) so an
# entry is checked without importing the backend (torch); a plugin without one here: its class's
BACKEND_OPTIONS: Registry[type[ModelOptions]] = Registry("backend")

COMMON_KEYS = ("backend", "model", "name", "revision")

# The flat record a model entry is stored as in the run config, so in the config hash that resumes
# and ``harness ab`` reuse look runs up by: every key of the single ModelSpec that held all the
# backends' options, in its order, with its default where the entry's backend has no such option.
# Frozen, so runs made before the per-backend options were split out are still found.
RECORD: Mapping[str, Any] = {
    "backend": "hf", "model": EMBEDDED_MODEL, "name": None, "adapter": None, "revision": None, "dtype": "auto", "device": "auto",
    "max_batch_tokens": None, "max_length": None, "trust_remote_code": False, "base_url": None, "api_key_env": "OPENAI_API_KEY",
    "endpoint": "auto", "concurrency": 4, "timeout_s": 60.0, "max_retries": 6, "extra_headers": {}, "extra_params": {},
    "mc_fallback": "error",
}  # fmt: skip

OptionsT = TypeVar("OptionsT", bound=ModelOptions)


def options_model(backend: str) -> type[ModelOptions]:
    """The options model of a backend: registered (built-ins), else its class's (plugins)."""
    if backend in BACKEND_OPTIONS:
        return BACKEND_OPTIONS.get(backend)
    return BACKENDS.get(backend)().options_model


def option_problem(backend: str, key: str) -> str:
    """Why ``key`` is refused for ``backend``: which other backend takes it, else a did-you-mean,
    then what this backend takes."""
    allowed = [*COMMON_KEYS, *options_model(backend).model_fields]
    owners = [f"{name}:" for name in BACKEND_OPTIONS.names() if name != backend and key in BACKEND_OPTIONS.get(name).model_fields]
    hint = f" (that is an option of {' and '.join(owners)})." if owners else f".{did_you_mean(key, allowed)}"
    return f"backend {backend} has no option '{key}'{hint} {backend}: entries take {', '.join(allowed)}."


def _refused(title: str, loc: str, message: str, value: Any, kind: str = "model_backend") -> ValidationError:
    """One validation error at ``loc`` with a whole message. ``model_option`` (a key the backend does not
    take) is printed as an unknown key, without its value, which may be a secret (yamlfile)."""
    error = InitErrorDetails(type=PydanticCustomError(kind, "{message}", {"message": message}), loc=(loc,), input=value)
    return ValidationError.from_exception_data(title, [error])


class ModelSpec(BaseModel):
    """A model as the user declares it (CLI ``--model`` string or an experiment-file mapping).

    Written flat (``{backend: hf, model: x, dtype: bfloat16}``): the common keys are fields here,
    the rest go to the backend's options model, so ``options`` is e.g. an ``HFOptions``. Dumps
    are the flat ``RECORD``; a stored record reads back into the same model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "hf"
    model: str = EMBEDDED_MODEL
    name: str | None = Field(default=None, description="display name; default backend:model")
    revision: str | None = Field(default=None, description="hub revision (hf), or a declared change of what a server serves (openai)")
    options: ModelOptions = Field(default_factory=ModelOptions, description="the backend's own keys (its options model)")

    def __init__(self, /, **data: Any) -> None:
        """Flat keys, as in an experiment file: ``ModelSpec(backend="openai", model="x", concurrency=8)``
        (typed as such: the backend's keys are not fields of this class)."""
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _backend_options(cls, data: Any) -> Any:
        """Flat keys -> common fields + the backend's options model; a key it does not take is
        refused with which backend takes it, or a did-you-mean."""
        if not isinstance(data, Mapping):
            return data
        backend = data.get("backend", RECORD["backend"])
        if not isinstance(backend, str):
            raise _refused(cls.__name__, "backend", f"expected a backend name, got {type(backend).__name__}", backend)
        try:
            kind = options_model(backend)
        except HarnessError as exc:
            raise _refused(cls.__name__, "backend", str(exc), backend) from None
        if isinstance(data.get("options"), ModelOptions):  # built in code, not from flat keys
            if not isinstance(data["options"], kind):
                raise _refused(cls.__name__, "options", f"backend {backend} takes {kind.__name__}, not {type(data['options']).__name__}", backend)
            return data
        if not data.get("model") and not kind.embedded_by_default:
            raise _refused(cls.__name__, "model", f"backend {backend} needs the model's name, as the server knows it", data.get("model"))
        given = {k: v for k, v in data.items() if k not in COMMON_KEYS}
        if set(RECORD) <= set(data):  # a stored record: other backends' keys at their recorded defaults are its shape, not settings
            given = {k: v for k, v in given.items() if k in kind.model_fields or k not in RECORD or v != RECORD[k]}
        for key in given:
            if key not in kind.model_fields:
                raise _refused(cls.__name__, key, option_problem(backend, key), key, "model_option")
        return {**{k: data[k] for k in COMMON_KEYS if k in data}, "options": kind.model_validate(given)}

    @model_serializer(mode="plain")
    def _record(self, info: SerializationInfo) -> dict[str, Any]:
        """The flat ``RECORD`` with this model's values (the backend's options models mask credentials);
        ``include``/``exclude`` apply to its keys."""
        record = {k: copy.copy(v) for k, v in RECORD.items()}
        record.update(backend=self.backend, model=self.model, name=self.name, revision=self.revision)
        record.update(self.options.model_dump(mode=info.mode))
        keys = [k for k in record if (info.include is None or k in info.include) and not (info.exclude and k in info.exclude)]
        return {k: record[k] for k in keys}

    def entry(self) -> dict[str, Any]:
        """The flat keys of this model with their real values (unmasked: for building, never for storing)."""
        options = {name: getattr(self.options, name) for name in type(self.options).model_fields}
        return {"backend": self.backend, "model": self.model, "name": self.name, "revision": self.revision, **options}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; ``update`` holds flat keys (``{"dtype": "bfloat16"}``) and is validated like a file's
        entry, so an option the backend does not take is a HarnessError, not a silent extra attribute."""
        if not update:
            return super().model_copy(deep=deep)
        data = {**self.entry(), **update}
        try:
            return self.model_validate(copy.deepcopy(data) if deep else data)
        except ValidationError as exc:
            raise HarnessError(format_validation_error(exc, type(self), f"model '{self.label}'", "model options")) from None

    def takes(self, key: str) -> bool:
        """Whether this model's backend has the option ``key`` (common keys included)."""
        return key in COMMON_KEYS or key in type(self.options).model_fields

    @property
    def adapter(self) -> str | None:
        """The PEFT adapter folder, for backends that take one (labels, tuning cards); else None."""
        value = getattr(self.options, "adapter", None)
        return value if isinstance(value, str) else None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = f"{self.backend}:{self.model}"
        return f"{base}+{self.adapter}" if self.adapter else base


def options_of(spec: ModelSpec, kind: type[OptionsT]) -> OptionsT:
    """A backend's view of its own options: ``spec.options`` as ``kind`` (another backend's spec is a bug)."""
    if not isinstance(spec.options, kind):
        raise TypeError(f"model '{spec.label}' has {type(spec.options).__name__}, not {kind.__name__}")
    return spec.options


def parse_model(text: str | None) -> ModelSpec:
    """``None``/'' -> the embedded model; ``backend:model`` otherwise (``hf:gpt2``, ``openai:gpt-4o``)."""
    if not text:
        return ModelSpec()
    backend, sep, model = text.partition(":")
    if not sep:
        if text == EMBEDDED_MODEL:
            return ModelSpec()
        raise HarnessError(
            f"--model {text!r}: expected BACKEND:MODEL (e.g. hf:{text}), or nothing for the embedded {EMBEDDED_MODEL}. "
            f"Backends: {', '.join(BACKENDS.names())}."
        )
    if backend not in BACKENDS:
        raise HarnessError(f"--model {text!r}: unknown backend '{backend}'.{did_you_mean(backend, BACKENDS.names())} Backends: {', '.join(BACKENDS.names())}.")
    if not model and not options_model(backend).embedded_by_default:
        raise HarnessError(f"--model {text!r}: give the model's name after '{backend}:', as the server knows it (e.g. {backend}:gpt-4o-mini)")
    return ModelSpec(backend=backend, model=model or EMBEDDED_MODEL)


@dataclass(frozen=True)
class Capabilities:
    """What one model can do with prompts of one kind (text or chat), known from its spec and files
    without loading it. Planning checks every cell against these flags before any cell runs, so a
    run that cannot work fails at once, not after its other cells. ``why`` holds, per False flag,
    the reason, worded to follow "model 'X' "."""

    prompt: bool = True  # takes prompts of this kind at all (a chat template needs a model with one)
    loglikelihood: bool = True  # scores log P(continuation | prompt): what multiple choice and classification need
    mc_fallback: bool = False  # without log-likelihoods, answers multiple choice another way (generate and parse)
    per_choice_contexts: bool = True  # scores choices that each have their own context (contexts:); no fallback can
    why: Mapping[str, str] = field(default_factory=dict)

    def reason(self, flag: str) -> str:
        return self.why.get(flag, f"cannot ({flag})")


class Backend(ABC):
    """Runs requests. Results come back in request order, one per request."""

    options_model: ClassVar[type[ModelOptions]] = ModelOptions  # the keys of a model entry this backend takes

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @classmethod
    def identity_of(cls, spec: ModelSpec) -> dict[str, Any]:
        """Everything that changes answers; part of every cache key. Never holds secrets.

        A classmethod so a fully cached run never has to load the model at all.
        """
        return {"backend": spec.backend, "model": spec.model, "adapter": spec.adapter, "revision": spec.revision}

    @property
    def identity(self) -> dict[str, Any]:
        return type(self).identity_of(self.spec)

    @classmethod
    def capabilities(cls, spec: ModelSpec, *, chat: bool) -> Capabilities:
        """What this model can do with chat prompts (``chat``) or text ones; everything by default.
        A classmethod, asked at planning with the spec only: it must not load the model."""
        return Capabilities()

    @abstractmethod
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Log P(continuation | context) for each request."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generated text for each request."""

    @classmethod
    def expect(cls, specs: Sequence[ModelSpec]) -> None:
        """The models a caller is about to run, one after the other (all of them, of any backend).
        A backend whose load is costly uses it to load once what several of them share (vllm:
        keeps one engine for a base and its LoRA adapters); by default nothing."""
        return None

    def stats(self) -> dict[str, Any]:
        """Counters worth reporting with a run (requests, retries...); empty when none."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, GPU memory)."""


# name -> a function that returns the backend class; built-ins are "module:attr" references and
# plugins entry points, both imported on first lookup (imports stay lazy)
BackendLoader = Callable[[], type[Backend]]


def backend_loader(value: object, name: str) -> BackendLoader:
    """A reference's or ``harness.backends`` entry point's object: a Backend subclass."""
    if not (isinstance(value, type) and issubclass(value, Backend)):
        raise TypeError(f"expected a subclass of harness.backends.Backend, got {value!r}")
    return lambda: value


BACKENDS: Registry[BackendLoader] = Registry("backend", "harness.backends", backend_loader)


def backend_class(spec: ModelSpec) -> type[Backend]:
    return BACKENDS.get(spec.backend)()


def load_backend(spec: ModelSpec) -> Backend:
    return backend_class(spec)(spec)
