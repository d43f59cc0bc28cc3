"""Options of ``formats`` (handler: harness/cli/formats.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task")
    p.add_argument("--prompt", required=True, help="the variant to perturb")
    p.add_argument("-k", type=int, default=8, help="number of variants, the original included (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    output_option(p, "folder to write <task>/<prompt>__fmt<i>.jinja into (required)", type=Path, metavar="OUT")
    p.add_argument("--instructions", type=Path, metavar="FILE",
                   help="alternative instructions (one per line, or a JSON/YAML list) replacing the template's instruction")


register_verb(Verb("formats", "write K format perturbations of a prompt variant (FormatSpread) as new variants", _arguments,
                   "harness.cli.formats:cmd_formats", ("dirs",)))
