"""``harness calibrate [RUN]``: contextual calibration of a stored run, side by side with plain accuracy."""

from __future__ import annotations

import argparse

from harness.cli.digest import keep_digests
from harness.report.terminal import Col, console, print_json, print_table
from harness.runner.calibration import CONTENT_FREE, CellCalibration, calibrate_run, calibration_summary
from harness.store.store import Store


def cmd_calibrate(args: argparse.Namespace) -> int:
    content_free = list(CONTENT_FREE) if args.content_free is None else args.content_free
    store = Store(args.db)
    try:
        run_id = store.resolve_run(args.run)
        written = calibrate_run(store, run_id, content_free=content_free)
        cells = calibration_summary(store, run_id)
        keep_digests(store, run_id, quiet=args.json)  # calibrated scores changed the run: a big run's digest is computed again
    finally:
        store.close()
    if args.json:
        print_json({"run_id": run_id, "items": written, "cells": [c.to_json() for c in cells]})
        return 0
    columns = [Col("cell", wrap=True), Col("n", "right"), Col("unscorable", "right", drop=3), Col("acc [95% CI]", "right"),
               Col("calibrated [95% CI]", "right"), Col("Δ", "right", drop=1), Col("McNemar p", "right"),
               Col("content-free p (bias)", wrap=True, drop=2)]
    rows = [[c.label, str(c.n), str(c.unscorable), f"{c.acc.mean:.3f} [{c.acc.low:.3f}, {c.acc.high:.3f}]",
             f"{c.acc_calibrated.mean:.3f} [{c.acc_calibrated.low:.3f}, {c.acc_calibrated.high:.3f}]",
             f"{c.acc_calibrated.mean - c.acc.mean:+.3f}", f"{c.p_value:.3g}", " ".join(f"{p:.2f}" for p in c.p_cf_mean) or "—"] for c in cells]
    out = console(args.wide)
    print_table(out, f"contextual calibration · run {run_id} · content-free: {', '.join(repr(t) for t in content_free)}", columns, rows)
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
