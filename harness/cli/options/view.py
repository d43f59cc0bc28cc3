"""Options of ``view`` (handler: harness/cli/view.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import Verb, register_verb

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only); another address is served only when "
                   "given here, and anyone who can reach it can read the database")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s; 0: any free port)")


register_verb(Verb("view", "browse the results database in a local web app (read-only): runs, verdicts, items", _arguments,
                   "harness.cli.view:cmd_view", ("db",)))
