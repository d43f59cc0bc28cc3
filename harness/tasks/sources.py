"""Where a split's rows come from: JSONL (the simple default), a JSON array, CSV/TSV, parquet, or a
folder written by ``datasets``' ``save_to_disk``; one reader per format, chosen by the file's
suffix (or the folder's ``dataset_info.json``) through one registry (``READERS``), so a plugin adds
a format under the ``harness.data_formats`` entry-point group.

Every reader yields (number, row): the line of a JSONL file (as always: default item ids are
``<file stem>:<line>``), else the 1-based row (a CSV's header is not a row, so a CSV written from a
JSONL without blank lines gives the same default ids). ``position`` says which, for messages;
errors name the file, that position and the field, as JSONL's always have.

CSV cells are text; a cell that is a JSON number, list, object, ``true``/``false`` or ``null``
becomes that value, so a CSV exported from the JSONL (or by pandas with JSON-encoded lists) gives
the same items: ``label`` 1 is the number 1 in both. To keep such a cell text, write it as a JSON
string: the cell's value ``"1"`` (in the CSV file, with CSV's own quoting, three double quotes each side).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.core.deps import require
from harness.core.errors import HarnessError, clip, not_utf8
from harness.core.fingerprint import content_sha256
from harness.core.redaction import redact_text
from harness.core.registry import Registry

Rows = list[tuple[int, dict[str, Any]]]
Reader = Callable[[Path], Rows]

READERS: Registry[Reader] = Registry("data format", group="harness.data_formats")
ARROW_FOLDER = "save_to_disk"  # the reader of a folder written by datasets' save_to_disk
MAX_CSV_FIELD = 64 * 1024 * 1024  # a cell larger than this is refused rather than read into memory


class HubDataset(BaseModel):
    """A split of a Hugging Face hub dataset, loaded through ``datasets`` (``pip install
    'harness[data]'``); offline (``HF_DATASETS_OFFLINE=1``) it comes from the local cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$", description="the dataset's hub id, e.g. allenai/ai2_arc")
    name: str | None = Field(default=None, description="its configuration (subset), e.g. ARC-Easy")
    split: str = Field(description="e.g. test")
    revision: str | None = Field(default=None, description="a commit, tag or branch; pin it for reproducible runs")

    def label(self) -> str:
        config = f" ({self.name})" if self.name else ""
        return f"hub dataset {self.path}{config} split {self.split!r}" + (f" at revision {self.revision}" if self.revision else "")


class HubSplit(BaseModel):
    """A split given as ``{hf: {path: ..., name: ..., split: ..., revision: ...}}`` in ``data:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hf: HubDataset


@dataclass(frozen=True)
class Origin:
    """Where rows came from, for messages (``label`` + ``line``/``row`` N) and default item ids
    (``<stem>:<N>``)."""

    label: str
    stem: str
    unit: str = "row"

    def at(self, number: int) -> str:
        return f"{self.label} {self.unit} {number}"


class DataSource(ABC):
    """A split's data: what it is called, what the provenance records, and its rows."""

    @abstractmethod
    def label(self) -> str: ...

    @abstractmethod
    def fingerprint(self) -> str: ...

    @abstractmethod
    def load(self) -> tuple[Origin, Rows]: ...


@dataclass(frozen=True)
class FileSource(DataSource):
    """A file or a save_to_disk folder, read by its format's reader."""

    path: Path

    def label(self) -> str:
        return str(self.path.resolve())

    def fingerprint(self) -> str:
        return fingerprint(self.path)

    def load(self) -> tuple[Origin, Rows]:
        return Origin(str(self.path), self.path.stem, "line" if format_of(self.path) == "jsonl" else "row"), read_rows(self.path)


@dataclass(frozen=True)
class HubSource(DataSource):
    ref: HubDataset

    def label(self) -> str:
        return self.ref.label()

    def fingerprint(self) -> str:
        return hub_fingerprint(self.ref)

    def load(self) -> tuple[Origin, Rows]:
        return Origin(self.ref.label(), self.ref.split), read_hub(self.ref)


def format_of(path: Path) -> str:
    """The reader's name for a path: the folder kind, else the suffix (``.csv.`` -> ``csv``)."""
    if path.is_dir():
        return ARROW_FOLDER
    return path.suffix.lower().lstrip(".")


def read_rows(path: Path) -> Rows:
    """The rows of a split's file or folder, by its format."""
    kind = format_of(path)
    if kind not in READERS:
        known = ", ".join(f".{n}" for n in READERS.names() if n != ARROW_FOLDER)
        raise HarnessError(f"{path}: no reader for '.{kind}' files; data files may be {known}, or a folder written by "
                           "datasets' save_to_disk")
    return READERS.get(kind)(path)


def fingerprint(path: Path) -> str:
    """What the run's provenance records for a split: the file's sha256, or for a folder the
    sha256 of its files' names and sha256s (a folder's content, not its mtime)."""
    if not path.is_dir():
        return content_sha256(path)
    parts = [f"{p.relative_to(path).as_posix()}\x00{content_sha256(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _as_row(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HarnessError(f"{path} {where}: expected an object (a mapping of field names to values), got {type(value).__name__}")
    return value


@READERS.register("jsonl")
def read_jsonl(path: Path) -> Rows:
    """Yield (line number, row); a broken line is an error naming file and line. A UTF-8 byte-order mark
    (Windows Notepad) before the first row is not part of it."""
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row = _json_value(line, path, f"line {number}")
                if not isinstance(row, dict):
                    raise HarnessError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
                rows.append((number, row))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    return rows


class _NotJson(ValueError):
    """A NaN or Infinity constant: Python's json reads it, JSON has none."""


def _no_constant(name: str) -> Any:
    raise _NotJson(name)


_CONSTANT = re.compile(r"(?<![\w\"])(-?Infinity|NaN)(?![\w\"])")
_LONG_NUMBER = re.compile(r"\d{4000,}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a lone surrogate anywhere (only a JSON escape of half an emoji makes one: such a string
    cannot be encoded as UTF-8, so storing or hashing it failed later)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _line_of(text: str, pattern: re.Pattern[str]) -> str:
    """``line N`` of the first match in a whole file's text (for errors json cannot place)."""
    found = pattern.search(text)
    return f"line {text.count(chr(10), 0, found.start()) + 1}" if found else "line ?"


def _jsonl_hint(text: str) -> str:
    """Why a line of a .jsonl file may not parse: a pretty-printed JSON document, or NUL bytes."""
    stripped = text.strip()
    if "\0" in text:
        return "; the line holds NUL bytes (a file cut short or corrupted while it was written?)"
    if stripped == "[" or (stripped.startswith("[") and stripped.lstrip("[ \t").startswith("{")):
        return "; a .jsonl file holds one JSON object per line, and this looks like a JSON array: name the file .json"
    if stripped == "{":
        return "; a .jsonl file holds one JSON object per line, and this object spans several lines: write each row on one line"
    return ""


def _json_value(text: str, path: Path, where: str) -> Any:
    """``json.loads`` with its errors (broken JSON, nesting past the stack, NaN, numbers past Python's digit limit,
    escapes that are no text) naming the file and place."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        at = where if where.startswith("line") else f"line {exc.lineno}"
        hint = _jsonl_hint(text) if where.startswith("line") else ""
        raise HarnessError(f"{path} {at}: not valid JSON ({exc.msg} at column {exc.colno}){hint}") from None
    except RecursionError:
        at = where if where.startswith("line") else f"line {_deep_line(text)}"
        raise HarnessError(f"{path} {at}: JSON nested too deeply to read (thousands of levels)") from None
    except _NotJson as exc:
        at = where if where.startswith("line") else _line_of(text, _CONSTANT)
        raise HarnessError(f"{path} {at}: {exc} is not valid JSON (Python's json.dumps writes it for a missing or undefined number); "
                           "write null or a number") from None
    except ValueError as exc:  # int() of a number with more digits than Python converts (sys.get_int_max_str_digits)
        at = where if where.startswith("line") else _line_of(text, _LONG_NUMBER)
        raise HarnessError(f"{path} {at}: a number with more than {sys.get_int_max_str_digits():,} digits, more than Python reads "
                           f"({clip(str(exc), 80)}); write it as a string") from None
    if "\\u" in text and _has_surrogate(value):
        at = where if where.startswith("line") else _line_of(text, re.compile(r"\\u[dD][89a-fA-F]"))
        raise HarnessError(f"{path} {at}: a \\u escape of a lone surrogate (e.g. \\ud800), which is no text; an emoji "
                           "escaped as two \\u escapes must keep both halves")
    return value


def _deep_line(text: str, limit: int = 500) -> int:
    """The line where brackets first nest ``limit`` deep (strings skipped): where a RecursionError came from."""
    depth, line, in_string, escaped = 0, 1, False, False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth >= limit:
                return line
        elif char in "]}":
            depth -= 1
    return line


def _read_json_file(path: Path) -> Any:
    """A whole JSON file; not UTF-8, broken or nested past the stack is an error naming the file and line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8(path, data) from None
    return _json_value(text, path, "")


@READERS.register("json")
def read_json_array(path: Path) -> Rows:
    """A JSON array of objects, or an object holding one under ``data`` / ``rows`` / ``examples``
    (how several exporters wrap it)."""
    document = _read_json_file(path)
    if isinstance(document, dict):
        held = [k for k in ("data", "rows", "examples") if isinstance(document.get(k), list)]
        if not held:
            keys = ", ".join(clip(str(k), 40) for k in list(document)[:8])
            raise HarnessError(f"{path}: expected a JSON array of objects (or an object with a 'data' list); got an object with "
                               f"keys {keys}. A file of one object per line should be named .jsonl")
        document = document[held[0]]
    if not isinstance(document, list):
        raise HarnessError(f"{path}: expected a JSON array of objects, got {type(document).__name__}")
    return [(number, _as_row(row, path, f"item {number}")) for number, row in enumerate(document, start=1)]


def _cell(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("[", "{", "\"", "-", "t", "f", "n") or stripped[:1].isdigit():
        try:
            value = json.loads(stripped, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # not JSON, -Infinity, a number past Python's digit limit: the text
            return text
        if "\\u" in stripped and _has_surrogate(value):
            return text
        return value
    return text


def _read_delimited(path: Path, delimiter: str) -> Rows:
    csv.field_size_limit(MAX_CSV_FIELD)
    rows: Rows = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # utf-8-sig: Excel's BOM is not part of the first name
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            header = next(reader, None)
            if header is None:
                raise HarnessError(f"{path}: empty file; expected a header line naming the fields")
            names = [h.strip() for h in header]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated or "" in names:
                what = f"names {', '.join(repeated)} more than once" if repeated else "has an empty field name"
                raise HarnessError(f"{path} line 1: the header {what}; each column needs its own name")
            for cells in reader:
                if not cells or cells == [""]:
                    continue
                if len(cells) != len(names):
                    raise HarnessError(f"{path} line {reader.line_num} (row {len(rows) + 1}): {len(cells)} fields, but the header "
                                       f"(line 1) names {len(names)} ({', '.join(names[:8])}); a field holding "
                                       f"'{delimiter}' or a line break must be quoted")
                nul = next((n for n, c in zip(names, cells) if "\0" in c), None)
                if nul is not None:
                    raise HarnessError(f"{path} line {reader.line_num} (row {len(rows) + 1}): field {nul!r} holds a NUL byte; a text file "
                                       "never does (a binary file, or one corrupted while it was written?)")
                rows.append((len(rows) + 1, {n: _cell(c) for n, c in zip(names, cells)}))
    except csv.Error as exc:
        raise HarnessError(f"{path} line {getattr(reader, 'line_num', '?')}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    return rows


@READERS.register("csv")
def read_csv(path: Path) -> Rows:
    return _read_delimited(path, ",")


@READERS.register("tsv")
def read_tsv(path: Path) -> Rows:
    return _read_delimited(path, "\t")


@READERS.register("parquet")
def read_parquet(path: Path) -> Rows:
    require("pyarrow", "data", what="reading parquet files")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants for a damaged file
        raise HarnessError(f"{path}: not a readable parquet file ({type(exc).__name__}: {redact_text(str(exc), limit=200)})") from None
    return [(number, row) for number, row in enumerate(table.to_pylist(), start=1)]


@READERS.register(ARROW_FOLDER)
def read_saved_dataset(path: Path) -> Rows:
    """A ``Dataset`` folder from ``save_to_disk``; a ``DatasetDict`` folder must be narrowed to a split."""
    if (path / "dataset_dict.json").is_file():
        info = _read_json_file(path / "dataset_dict.json")
        splits = [str(s) for s in info.get("splits", [])] if isinstance(info, dict) else []
        choices = ", ".join(f"{path}/{s}" for s in splits)
        raise HarnessError(f"{path}: a DatasetDict folder (splits {', '.join(splits)}); name one split's folder: {choices}")
    if not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
        raise HarnessError(f"{path}: a folder, but not one written by datasets' save_to_disk (no dataset_info.json or state.json); "
                           "data may be a .jsonl/.json/.csv/.tsv/.parquet file or such a folder")
    require("datasets", "data", what="reading a save_to_disk folder")
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError variants for a damaged folder
        raise HarnessError(f"{path}: not a readable save_to_disk folder ({type(exc).__name__}: {redact_text(str(exc), limit=200)})") from None
    return [(number, dict(row)) for number, row in enumerate(dataset, start=1)]


def is_data(path: Path) -> bool:
    """Whether ``path`` is something a split can name: a file, or a save_to_disk folder."""
    return path.is_file() or (path.is_dir() and any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json")))


@lru_cache(maxsize=16)
def _load_hub(ref: HubDataset) -> Any:
    """The split, loaded once per process: a task's rows and the run's provenance read the same one."""
    require("datasets", "data", what=f"the {ref.label()}")
    import datasets

    try:
        return datasets.load_dataset(ref.path, ref.name, split=ref.split, revision=ref.revision)
    except ValueError as exc:  # an unknown split or configuration: datasets names the ones there are
        raise HarnessError(f"{ref.label()}: {str(exc)[:300]}") from None
    except (ConnectionError, FileNotFoundError) as exc:
        raise HarnessError(
            f"{ref.label()}: not found on the hub nor in the local cache ({type(exc).__name__}: {redact_text(str(exc), limit=200)}). Offline, "
            "set HF_DATASETS_OFFLINE=1 and load it once where the hub is reachable, or save the split as a file "
            "(dataset.to_json('test.jsonl')) and name that"
        ) from None


def read_hub(ref: HubDataset) -> Rows:
    return [(number, dict(row)) for number, row in enumerate(_load_hub(ref), start=1)]


def hub_fingerprint(ref: HubDataset) -> str:
    """The reference (with its revision) and the loaded content's fingerprint (datasets' own hash
    of its Arrow cache files), so a silently updated unpinned dataset is a different provenance."""
    dataset = _load_hub(ref)
    described = {**ref.model_dump(), "content": getattr(dataset, "_fingerprint", None), "rows": len(dataset)}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def count_rows(source: DataSource) -> int | None:
    """The number of rows of a JSONL split without parsing it (its non-blank lines: what
    read_jsonl yields when the file is valid), for listings such as ``harness tasks``, which would
    otherwise parse every file of every task; None for other sources (read them to count)."""
    if not isinstance(source, FileSource) or format_of(source.path) != "jsonl":
        return None
    try:
        with open(source.path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError as exc:
        raise HarnessError(f"{source.path}: cannot read ({exc.strerror})") from None
