"""Options of ``sensitivity`` (handler: harness/cli/sensitivity.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options.decide import DEFAULT_RESAMPLES
from harness.cli.verbs import ListFlag, Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["latest"], help="run ids or prefixes (default: latest)")
    p.add_argument("--metric", help="metric (default: each task's first; acc also pairs with acc_calibrated)")
    p.add_argument("--task", action=ListFlag, dest="only_tasks", help="only these tasks (a b, or a,b)")
    output_option(p, "also write the sensitivity page of harness view as one self-contained HTML file", type=Path, metavar="OUT", old="--html")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wide", action="store_true", help="tables: every column, even past the terminal's width (default: the key columns that fit)")


register_verb(Verb("sensitivity", "how much the score moves with template, format, selector, draw, order, calibration", _arguments,
                   "harness.cli.sensitivity:cmd_sensitivity", ("db",)))
