"""``harness sensitivity``: how much the score moves with template, format, selector, draw, order, calibration."""

from __future__ import annotations

import argparse

from harness.analysis.sensitivity import analyse
from harness.core.errors import HarnessError
from harness.report.sensitivity import print_tables
from harness.report.terminal import console, print_json
from harness.store.store import Store
from harness.view.export import write_sensitivity_report


def cmd_sensitivity(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    try:
        runs = [store.resolve_run(r) for r in args.runs]
        result = analyse(store, runs, args.metric, tasks=args.only_tasks, confidence=args.confidence, resamples=args.resamples, seed=args.seed)
        if not result.slices:
            raise HarnessError(f"runs {', '.join(runs)}: no factor varies (each needs two settings that differ only in it)")
        if args.output:  # the sensitivity page of harness view, as one file
            write_sensitivity_report(store, result, args.output)
    finally:
        store.close()
    if args.json:
        print_json(result.to_dict())
    else:
        print_tables(result, console(args.wide))
        if args.output:
            print(f"wrote {args.output}")
    return 0
