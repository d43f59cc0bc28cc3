"""Options of ``optimize`` (handler: harness/cli/optimize.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import IntListFlag, ListFlag, Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="the task (a name or a task folder)")
    p.add_argument("--prompt", "-p", required=True, dest="start", metavar="START", help="the prompt variant to start from (and to beat)")
    p.add_argument("--shots", action=IntListFlag, default=[0], help="shot counts of the grammar; the first is START's (default: 0)")
    p.add_argument("--selector", action=ListFlag, dest="selectors", default=["first_k"],
                   help="selectors of the grammar for few-shot candidates; the first is START's (default: first_k)")
    p.add_argument("--proposer", default="grammar", metavar="grammar|BACKEND:MODEL",
                   help="grammar: formats x instructions x shots x selectors; BACKEND:MODEL (openai:NAME, hf:PATH, ...): that model rewrites "
                        "the instruction (default: %(default)s)")
    p.add_argument("-k", type=int, default=8, help="candidates to propose besides START (default: %(default)s)")
    p.add_argument("--instructions", type=Path, metavar="FILE",
                   help="alternative instructions for the grammar (one per line, or a JSON/YAML list)")
    p.add_argument("--search-share", type=float, default=0.6, help="share of the evaluated items searched on; the rest is held out for "
                   "the confirmation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="the split, the grammar's draw, the race's order, demonstrations (default: %(default)s)")
    output_option(p, "folder the winner is written into as <task>/<name>.jinja (default: optimized)", type=Path, metavar="OUT")
    p.add_argument("--model", "-m", nargs="?", const="", help="BACKEND:MODEL evaluated; no value or none = the embedded Gemma 3 270M")
    p.add_argument("--limit", type=int, help="first N items of the task (then split)")
    p.add_argument("--sample", type=int, help="a seeded random sample of N items (then split)")
    p.add_argument("--stratify", metavar="EXPR", help="with --sample or --limit: spread the items over this field or expression")
    p.add_argument("--split", default="test", help="the evaluated split (default: %(default)s)")
    p.add_argument("--fewshot-split", default="fewshot", help="the demonstrations' split (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05, help="error probability of the race and level of the confirmation test (default: %(default)s)")
    p.add_argument("--round", type=int, default=25, dest="race_round", metavar="N", help="items per cell per round of the race (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="also show the model libraries' own output")


register_verb(Verb("optimize", "search prompt candidates on part of the items, confirm the winner against START on held-out items", _arguments,
                   "harness.cli.optimize:cmd_optimize", ("db", "dirs")))
