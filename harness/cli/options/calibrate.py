"""Options of ``calibrate`` (handler: harness/cli/calibrate.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import Verb, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--content-free", nargs="+", metavar="TEXT",
                   help="content-free inputs whose choice probabilities estimate the bias (default: 'N/A' '' '[MASK]')")
    p.add_argument("--wide", action="store_true", help="tables: every column, even past the terminal's width (default: the key columns that fit)")


register_verb(Verb("calibrate", "contextual calibration (content-free inputs) of a run's multiple-choice/classification cells", _arguments,
                   "harness.cli.calibrate:cmd_calibrate", ("db",)))
