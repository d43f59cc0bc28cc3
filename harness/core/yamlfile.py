"""Reading user YAML files into strict pydantic models, with errors that name the place.

The loader is ``yaml.SafeLoader`` (never a full load) with three refusals a hand-written file
never needs and a hostile one uses: a key given twice in one mapping (YAML's last-wins would
silently drop the first), nesting deeper than ``MAX_DEPTH`` (the composer recurses; thousands of
levels were a RecursionError), and aliases that expand past ``MAX_NODES`` nodes (a 700-byte
"billion laughs" file expands to 10**9; counted on the composed node graph, so refusing it costs
time linear in the file, not in the expansion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.core.errors import HarnessError, bounded_copy, clip, did_you_mean, not_utf8, shorten
from harness.core.redaction import MASK, is_credential_name, redact_value

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 64  # levels of nested mappings/sequences
MAX_NODES = 200_000  # nodes after expanding every alias
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    """A structure the strict loader refuses (reported like any YAML error: line, column, problem)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, deep nesting and alias bombs (see the module docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):  # SafeConstructor also passes other nodes here to fail them
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise _Refused(None, None, f"key {shorten(key, 80)} appears twice in one mapping (first on line {first}); "
                                   "YAML would keep only the last one", key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose alias expansion exceeds MAX_NODES, or that refers to itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _Refused(None, None, "an alias refers to a node that contains it (a recursive structure)", node.start_mark)
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise _Refused(None, None, f"aliases expand to more than {MAX_NODES:,} values (a YAML alias bomb?)", node.start_mark)
        sizes[key] = total
        return total

    size(root)


def load_yaml(text: str) -> Any:
    """``yaml.load`` with StrictLoader (a SafeLoader): raises yaml.YAMLError for what it refuses."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_error_message(exc: yaml.YAMLError, text: str = "") -> tuple[str, str]:
    """(where, problem) of a YAML error: ' line L, column C' (or '') and the bounded problem."""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: the reader knows only the character's position
        before = text[: exc.position]
        where = f" line {before.count(chr(10)) + 1}, column {exc.position - (before.rfind(chr(10)) + 1) + 1}" if text else ""
        return where, f"character #x{exc.character:04x} is not allowed in YAML ({exc.reason})" if isinstance(exc.character, int) else exc.reason
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where, clip(str(problem), 300)


def read_yaml_text(path: Path, what: str) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is a HarnessError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8(path, data) from None


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A file that must hold a mapping, read with StrictLoader (safe_load semantics, never full load)."""
    text = read_yaml_text(path, what)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        where, problem = yaml_error_message(exc, text)
        raise HarnessError(f"{path}{where}: invalid YAML: {problem}") from None
    except RecursionError:  # a construct deeper than the stack outside compose (MAX_DEPTH guards the composer)
        raise HarnessError(f"{path}: invalid YAML: nested too deeply") from None
    if raw is None:  # an empty file, or only comments
        raise HarnessError(f"{path}: the file is empty; expected a mapping of {what} fields (name: value lines)")
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


MAX_ERRORS = 8  # pydantic errors listed in one message; the rest are counted


def format_validation_error(exc: ValidationError, model: type[BaseModel], path: Path | str, what: str) -> str:
    """One line per pydantic error (at most MAX_ERRORS), every echoed key and value bounded (``shorten``)."""
    lines = []
    errors = exc.errors()
    for error in errors[:MAX_ERRORS]:
        loc = clip(".".join(str(p) for p in error["loc"]) or "(top level)", 120)
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, tuple(error["loc"][:-1]))
            key = str(error["loc"][-1])
            lines.append(f"unknown key '{loc}'.{did_you_mean(key, owner.model_fields)} Allowed: {', '.join(owner.model_fields)}.")
        elif error["type"] == "model_option":  # a key the model's backend does not take (backends/base.py); the value may be a secret
            lines.append(f"unknown key '{loc}': {clip(str(error['msg']), 300)}")
        elif error["type"] == "missing":
            lines.append(f"missing required field '{loc}'.")
        else:
            message = clip(str(error["msg"]).removeprefix("Value error, "), 400)
            secret = any(isinstance(part, str) and is_credential_name(part) for part in error["loc"])  # e.g. extra_headers.Authorization
            if not error["loc"]:  # a check across fields (a model validator): its input is the whole file, not worth echoing
                lines.append(message.rstrip(".") + ".")
                continue
            lines.append(f"field '{loc}': {message} (got {MASK if secret else shorten(redact_value(bounded_copy(error.get('input'))))}).")
    if len(errors) > MAX_ERRORS:
        lines.append(f"(and {len(errors) - MAX_ERRORS} more problems)")
    return f"{path}: invalid {what}: " + " ".join(lines)


def validate(model: type[M], raw: dict[str, Any], path: Path | str, what: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(format_validation_error(exc, model, path, what)) from None
    except RecursionError:  # a value nested past the stack (e.g. built by a caller, not read by the loader)
        raise HarnessError(f"{path}: invalid {what}: a value is nested too deeply") from None
