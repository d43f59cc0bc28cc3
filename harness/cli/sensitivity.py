"""``harness sensitivity``: how much the score moves with template, format, selector, draw, order, calibration."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.analysis.sensitivity import analyse
from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.report.sensitivity import print_tables, write_html
from harness.report.terminal import print_json
from harness.stats.basics import DEFAULT_RESAMPLES
from harness.store.store import Store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["latest"], help="run ids or prefixes (default: latest)")
    p.add_argument("--metric", help="metric (default: each task's first; acc also pairs with acc_calibrated)")
    p.add_argument("--task", nargs="+", dest="only_tasks", help="only these tasks")
    p.add_argument("--html", type=Path, metavar="OUT", help="also write the report as one self-contained HTML file")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    try:
        runs = [store.resolve_run(r) for r in args.runs]
        result = analyse(store, runs, args.metric, tasks=args.only_tasks, confidence=args.confidence, resamples=args.resamples, seed=args.seed)
    finally:
        store.close()
    if not result.slices:
        raise HarnessError(f"runs {', '.join(runs)}: no factor varies (each needs two settings that differ only in it)")
    if args.html:
        write_html(result, args.html)
    if args.json:
        print_json(result.to_dict())
    else:
        print_tables(result)
        if args.html:
            print(f"wrote {args.html}")
    return 0


register_verb(Verb("sensitivity", "how much the score moves with template, format, selector, draw, order, calibration", _arguments, cmd_sensitivity, ("db",)))
