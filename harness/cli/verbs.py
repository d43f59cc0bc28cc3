"""The verb registry: each ``harness/cli/<group>.py`` registers its verbs here, and app.py builds
the parser from it, so a verb is declared in one place (name, help, options, handler).

The options many verbs share (``--db``/``--json``, the task/prompt/data folders) are added from
here, before the verb's own, so they read the same everywhere.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.core.registry import Registry
from harness.store.store import DEFAULT_DB

Shared = Literal["db", "dirs"]


def db_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--json``: the verbs that read or write the results file."""
    parser.add_argument("--db", type=Path, default=Path(os.environ.get("HARNESS_DB", DEFAULT_DB)), help="SQLite results file (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def dirs_options(parser: argparse.ArgumentParser) -> None:
    """The folders tasks, prompt templates and task data are looked up in, besides the shipped ones."""
    parser.add_argument("--tasks-dir", action="append", default=[], type=Path, help="extra folder of task folders")
    parser.add_argument("--prompts-dir", action="append", default=[], type=Path, help="extra folder of prompts/<task>/*.jinja")
    parser.add_argument("--data-dir", action="append", default=[], type=Path, help="folder where task data paths are looked up")


SHARED: dict[Shared, Callable[[argparse.ArgumentParser], None]] = {"db": db_options, "dirs": dirs_options}


@dataclass(frozen=True)
class Verb:
    """One ``harness VERB``: its shared option sets (in order), then its own ``arguments``."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    shared: tuple[Shared, ...] = ()

    def add_to(self, verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(self.name, help=self.help)
        for options in self.shared:
            SHARED[options](parser)
        self.arguments(parser)
        return parser


VERBS: Registry[Verb] = Registry("verb")


def register_verb(verb: Verb) -> Verb:
    return VERBS.add(verb.name, verb)
