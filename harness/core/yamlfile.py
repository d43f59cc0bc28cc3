"""Reading user YAML files into strict pydantic models, with errors that name the place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.core.errors import HarnessError, did_you_mean

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """``yaml.safe_load`` (never full load) of a file that must hold a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise HarnessError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: expected a mapping of {what} fields at the top level, got {type(raw).__name__}")
    return raw


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The pydantic model that owns the field at ``loc`` (for listing allowed keys)."""
    current = root
    for part in loc:
        field = current.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for candidate in candidates:
            inner = [candidate, *getattr(candidate, "__args__", ())]
            for c in inner:
                if isinstance(c, type) and issubclass(c, BaseModel):
                    current = c
    return current


def format_validation_error(exc: ValidationError, model: type[BaseModel], path: Path | str, what: str) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, tuple(error["loc"][:-1]))
            key = str(error["loc"][-1])
            lines.append(f"unknown key '{loc}'.{did_you_mean(key, owner.model_fields)} Allowed: {', '.join(owner.model_fields)}.")
        elif error["type"] == "model_option":  # a key the model's backend does not take (backends/base.py); the value may be a secret
            lines.append(f"unknown key '{loc}': {error['msg']}")
        elif error["type"] == "missing":
            lines.append(f"missing required field '{loc}'.")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"field '{loc}': {message} (got {error.get('input')!r}).")
    return f"{path}: invalid {what}: " + " ".join(lines)


def validate(model: type[M], raw: dict[str, Any], path: Path | str, what: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(format_validation_error(exc, model, path, what)) from None
