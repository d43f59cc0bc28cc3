"""Options of ``view`` and ``digest`` (handlers: harness/cli/view.py, harness/cli/digest.py)."""

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



def _digest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="runs to digest (ids, or 'latest'; default: every finished run of at least 20,000 item rows without a current digest)")


register_verb(Verb("digest", "keep what harness view shows of a run (verdict, plots, best cells, score tables) so its first view is instant",
                   _digest_arguments, "harness.cli.digest:cmd_digest", ("db",)))
