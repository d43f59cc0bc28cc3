"""Options of ``plan`` (handler: harness/cli/plan.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import Verb, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mde", type=float, required=True, help="smallest difference worth detecting, in metric units (0.03 = 3 points)")
    p.add_argument("--baseline", type=float, help="0/1 metrics: expected score of the cells (e.g. 0.6)")
    p.add_argument("--discordance", type=float, help="0/1 metrics: share of items on which two cells disagree (from a pilot)")
    p.add_argument("--sd", type=float, help="continuous metrics: sd of the per-item differences")
    p.add_argument("--pilot", help="a stored run to measure discordance / sd (and clustering) from")
    p.add_argument("--task", help="with --pilot: the task to measure (default: every task of the run)")
    p.add_argument("--metric", help="with --pilot: the metric (default: each task's first)")
    p.add_argument("--cells", type=int, default=2, help="cells to be compared; all pairs are adjusted for (default: %(default)s)")
    p.add_argument("--margin", type=float, help="also: items to show equivalence within ±MARGIN when there is no difference")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)


register_verb(Verb("plan", "items needed to detect a difference (or show equivalence), from assumptions or a pilot run", _arguments,
                   "harness.cli.plan:cmd_plan", ("db",)))
