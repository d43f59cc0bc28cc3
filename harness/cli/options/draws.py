"""Options of ``draws`` (handler: harness/cli/draws.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import Verb, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["latest"], help="run ids or prefixes (default: latest)")
    p.add_argument("--metric", help="metric (default: each task's first)")
    p.add_argument("--wide", action="store_true", help="tables: every column, even past the terminal's width (default: the key columns that fit)")


register_verb(Verb("draws", "few-shot settings over demonstration draws (run --draws N): mean, spread, CI over draws", _arguments,
                   "harness.cli.draws:cmd_draws", ("db",)))
