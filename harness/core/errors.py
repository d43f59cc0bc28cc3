"""User-facing errors: one exception type the CLI turns into a clean message and exit code 2.

Also the small helpers every error message uses: ``shorten`` bounds an echoed user value (a
700-byte YAML alias bomb once became a 52 MB message), ``existing_dir`` checks a folder the user
named (a typo in ``--data-dir`` or ``data_dirs`` must not be silently ignored).
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from pathlib import Path


class HarnessError(Exception):
    """A problem with the user's input or environment (never a bug): printed without a traceback."""


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''."""
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:  # 'accuracy' -> 'acc': a shared prefix is a good hint too
        close = [o for o in options if len(o) >= 3 and (name.startswith(o) or o.startswith(name))][:1]
    return f" Did you mean '{close[0]}'?" if close else ""


ECHO_LIMIT = 200  # characters of a user value an error message repeats


def _bounded_repr(limit: int) -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxdict = r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 6
    r.maxstring = r.maxother = r.maxlong = max(limit, 12)
    return r


def shorten(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` bounded to about ``limit`` characters, built without the full repr (reprlib
    stops at a few elements per level), so a huge or deeply nested value costs little to echo."""
    return clip(_bounded_repr(limit).repr(value), limit)


def bounded_copy(value: object, items: int = 8, chars: int = 1000, depth: int = 4) -> object:
    """A small copy of ``value`` to redact and then ``shorten``: the first ``items`` entries of each mapping and
    list, strings cut at ``chars`` (far past what ``shorten`` shows, so a secret near the shown part is whole when
    it is redacted), at most ``depth`` levels. Redacting the value itself could take minutes for a huge one."""
    if isinstance(value, str):
        return value[:chars]
    if depth <= 0 and isinstance(value, (dict, list, tuple)):
        return "..."
    if isinstance(value, dict):
        return {k: bounded_copy(v, items, chars, depth - 1) for k, v in list(value.items())[:items]}
    if isinstance(value, (list, tuple)):
        return [bounded_copy(v, items, chars, depth - 1) for v in value[:items]]
    return value


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marked with '...' where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def not_utf8(path: Path | str, data: bytes | None = None) -> HarnessError:
    """The error for a file that is not UTF-8 text, naming the line and byte offset of the first bad
    byte (``data``: the file's bytes, read here when not given)."""
    try:
        raw = Path(path).read_bytes() if data is None else data
        raw.decode("utf-8")
    except OSError as exc:
        return HarnessError(f"{path}: cannot read ({exc.strerror})")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return HarnessError(f"{path} line {line}, column {column} (byte {exc.start}): not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                            "save the file as UTF-8")
    return HarnessError(f"{path}: not UTF-8 text; save the file as UTF-8")


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is an existing folder, else a HarnessError naming ``what`` (e.g.
    ``"--data-dir"`` or ``"data_dirs in experiment.yaml"``): a folder the user named but mistyped
    would otherwise be skipped without a word when nothing is looked up in it."""
    folder = Path(path).expanduser()
    try:
        is_dir, exists = folder.is_dir(), folder.exists()
    except OSError as exc:  # a name too long, a loop of links
        raise HarnessError(f"{what}: cannot use folder '{clip(str(path))}' ({exc.strerror})") from None
    if not exists:
        raise HarnessError(f"{what}: folder '{clip(str(path))}' does not exist")
    if not is_dir:
        raise HarnessError(f"{what}: '{clip(str(path))}' is not a folder")
    return folder
