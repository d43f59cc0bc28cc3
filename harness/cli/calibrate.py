"""``harness calibrate [RUN]``: contextual calibration of a stored run, side by side with plain accuracy."""

from __future__ import annotations

import argparse

from harness.cli.verbs import Verb, register_verb
from harness.report.terminal import console, print_json
from harness.runner.calibration import CONTENT_FREE, CellCalibration, calibrate_run, calibration_summary
from harness.store.store import Store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--content-free", nargs="+", default=list(CONTENT_FREE), metavar="TEXT",
                   help="content-free inputs whose choice probabilities estimate the bias (default: 'N/A' '' '[MASK]')")


def cmd_calibrate(args: argparse.Namespace) -> int:
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
    for column in ("cell", "n", "unscorable", "acc [95% CI]", "calibrated [95% CI]", "Δ", "McNemar p", "content-free p (bias)"):
        table.add_column(column)
    for c in cells:
        table.add_row(
            c.label, str(c.n), str(c.unscorable), f"{c.acc.mean:.3f} [{c.acc.low:.3f}, {c.acc.high:.3f}]",
            f"{c.acc_calibrated.mean:.3f} [{c.acc_calibrated.low:.3f}, {c.acc_calibrated.high:.3f}]",
            f"{c.acc_calibrated.mean - c.acc.mean:+.3f}", f"{c.p_value:.3g}", " ".join(f"{p:.2f}" for p in c.p_cf_mean) or "—",
        )
    out = console()
    out.print(table)
    for c in cells:
        for note in _notes(c):
            out.print(f"[yellow]note:[/] {c.label}: {note}", highlight=False)
    return 0


def _notes(c: CellCalibration) -> list[str]:
    notes = []
    if c.unscorable:
        because = (f"{c.unscorable_content_free} for want of any scorable content-free input, "
                   f"{c.unscorable - c.unscorable_content_free} by their own scores") if c.unscorable_content_free else "by their own scores"
        notes.append(f"{c.unscorable} of {c.n} items unscorable (NaN/+inf log-probabilities, {because}): "
                     "no calibrated choice, counted wrong")
    if c.content_free_dropped:
        notes.append(f"{c.content_free_dropped} of {c.n} items had a content-free input the model could not score: "
                     "left out of their p_cf, estimated from the others")
    return notes


register_verb(Verb("calibrate", "contextual calibration (content-free inputs) of a run's multiple-choice/classification cells", _arguments,
                   cmd_calibrate, ("db",)))
