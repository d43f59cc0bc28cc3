"""The verb registry: each ``harness/cli/options/<group>.py`` declares its verbs here (name, help,
options, handler), and app.py builds the parser from it, so a verb is declared in one place.

The parser is built from light modules only: a handler is named as ``"module:function"`` and
imported when its verb runs, so ``harness --help`` does not load numpy, scipy, pandas or torch.

Also here: the options many verbs share (``--db``/``--json``, the task/prompt/data folders), added
before the verb's own so they read the same everywhere, and the list flags that take ``a,b`` as
well as ``a b`` (as lm-eval users type them).
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from harness.core.errors import HarnessError, clip, existing_dir
from harness.core.registry import Reference, Registry

Shared = Literal["db", "dirs"]
Handler = Callable[[argparse.Namespace], int]

# harness.store.store.DEFAULT_DB; spelt here so the parser does not import the store (tests/cli/test_startup.py checks they agree)
DEFAULT_DB = "results/harness.db"
DIR_FLAGS = {"tasks_dir": "--tasks-dir", "prompts_dir": "--prompts-dir", "data_dir": "--data-dir"}


class ListFlag(argparse.Action):
    """``--task a,b``, ``--task a b`` and ``--task a --task b`` all give ``[a, b]``: one flat list,
    each part converted by ``item`` (IntListFlag: ``--shots 0,5``)."""

    item: Callable[[str], Any] = str

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: str | Sequence[Any] | None,
                 option_string: str | None = None) -> None:
        given = getattr(namespace, self.dest, None)
        items = [] if given is None or given is self.default else list(given)  # a default list is replaced, a repeated flag adds
        for value in [values] if isinstance(values, str) else list(values or []):
            for part in str(value).split(","):
                if not part.strip():
                    parser.error(f"argument {option_string}: empty entry in {clip(str(value))!r} (write a,b or a b)")
                try:
                    items.append(self.item(part.strip()))
                except ValueError:
                    parser.error(f"argument {option_string}: invalid {getattr(self.item, '__name__', 'value')} value: {clip(part)!r}")
        setattr(namespace, self.dest, items)


class IntListFlag(ListFlag):
    item = int


class FloatListFlag(ListFlag):
    item = float


def output_option(parser: argparse.ArgumentParser, help: str, old: str = "--out", **kwargs: Any) -> None:
    """``-o/--output``, the one spelling of every verb that writes a file or folder; ``old`` (the
    spelling it had) still works, unlisted, so scripts keep working. Required ones are checked by the handler."""
    parser.add_argument("-o", "--output", dest="output", help=help, **kwargs)
    parser.add_argument(old, dest="output", help=argparse.SUPPRESS, **kwargs)


def db_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--json``: the verbs that read or write the results file."""
    parser.add_argument("--db", type=Path, default=Path(os.environ.get("HARNESS_DB", DEFAULT_DB)), help="SQLite results file (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def dirs_options(parser: argparse.ArgumentParser) -> None:
    """The folders tasks, prompt templates and task data are looked up in, besides the shipped ones."""
    parser.add_argument("--tasks-dir", action="append", default=[], type=Path, help="extra folder of task folders")
    parser.add_argument("--prompts-dir", action="append", default=[], type=Path, help="extra folder of prompts/<task>/*.jinja")
    parser.add_argument("--data-dir", action="append", default=[], type=Path, help="folder where task data paths are looked up")


def check_dirs(args: argparse.Namespace) -> None:
    """Refuse a ``--tasks-dir``/``--prompts-dir``/``--data-dir`` that is not a folder, even when
    nothing is looked up in it: a typo would otherwise be skipped without a word; and an ``-o/--output``
    below a file (``-o notes.txt/report.html``), which no verb can write, before any work is done."""
    for dest, flag in DIR_FLAGS.items():
        for path in getattr(args, dest, None) or []:
            try:
                existing_dir(path, flag)
            except HarnessError as exc:
                hint = sibling_hint(Path(path))
                raise HarnessError(f"{exc}.{hint}" if hint else str(exc)) from None
    output = getattr(args, "output", None)
    if isinstance(output, (str, Path)):
        blocking = next((p for p in Path(output).parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise HarnessError(f"-o/--output '{clip(str(output))}': '{clip(str(blocking))}' is a file, not a folder, so nothing can be written there")


def sibling_hint(path: Path) -> str:
    """' Did you mean ...?' naming a folder beside ``path`` with a close name (``../shared/dta`` -> ``../shared/data``)."""
    parent = path.parent
    try:
        siblings = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
    return f" Did you mean '{clip(str(parent / close[0]))}'?" if close else ""


SHARED: dict[Shared, Callable[[argparse.ArgumentParser], None]] = {"db": db_options, "dirs": dirs_options}


@dataclass(frozen=True)
class Verb:
    """One ``harness VERB``: its shared option sets (in order), then its own ``arguments``; the
    ``handler`` is a function or a ``"module:function"`` reference imported when the verb runs."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler | str
    shared: tuple[Shared, ...] = ()

    def add_to(self, verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(self.name, help=self.help, allow_abbrev=False)
        for options in self.shared:
            SHARED[options](parser)
        self.arguments(parser)
        return parser

    def run(self, args: argparse.Namespace) -> int:
        handler = self.handler if callable(self.handler) else cast(Handler, Reference(self.handler).load())
        try:
            return handler(args)
        except Exception as exc:  # a results file damaged past its first pages opens fine and fails on the first read there
            # by reference, as handlers are: the store is not imported for --help
            damaged_database = cast(Callable[[BaseException, Any], "HarnessError | None"], Reference("harness.store.store:damaged_database").load())
            damaged = damaged_database(exc, getattr(args, "db", None))
            if damaged is None:
                raise
            raise damaged from None


VERBS: Registry[Verb] = Registry("verb")


def register_verb(verb: Verb) -> Verb:
    return VERBS.add(verb.name, verb)
