"""``harness calibrate [RUN]``: contextual calibration of a stored run, side by side with plain accuracy."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from harness.calibration import CONTENT_FREE, calibrate_run, calibration_summary
from harness.store import Store

Adder = Callable[[argparse.ArgumentParser], None]


def add_verb(verbs: argparse._SubParsersAction, common: Adder) -> None:  # type: ignore[type-arg]
    p = verbs.add_parser("calibrate", help="contextual calibration (content-free inputs) of a run's multiple-choice/classification cells")
    common(p)
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--content-free", nargs="+", default=list(CONTENT_FREE), metavar="TEXT",
                   help="content-free inputs whose choice probabilities estimate the bias (default: 'N/A' '' '[MASK]')")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.report import console, print_json

    store = Store(args.db)
    try:
        run_id = store.resolve_run(args.run)
        written = calibrate_run(store, run_id, content_free=args.content_free)
        cells = calibration_summary(store, run_id)
    finally:
        store.close()
    if args.json:
        print_json({"run_id": run_id, "items": written, "cells": [c.to_json() for c in cells]})
        return 0
    from rich.table import Table

    table = Table(title=f"contextual calibration · run {run_id} · content-free: {', '.join(repr(t) for t in args.content_free)}")
    for column in ("cell", "n", "acc [95% CI]", "calibrated [95% CI]", "Δ", "McNemar p", "content-free p (bias)"):
        table.add_column(column)
    for c in cells:
        table.add_row(
            c.label, str(c.n), f"{c.acc.mean:.3f} [{c.acc.low:.3f}, {c.acc.high:.3f}]",
            f"{c.acc_calibrated.mean:.3f} [{c.acc_calibrated.low:.3f}, {c.acc_calibrated.high:.3f}]",
            f"{c.acc_calibrated.mean - c.acc.mean:+.3f}", f"{c.p_value:.3g}", " ".join(f"{p:.2f}" for p in c.p_cf_mean),
        )
    console().print(table)
    return 0
