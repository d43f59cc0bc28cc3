"""``harness digest``: compute and keep the viewer's digests of runs (harness/view/digest.py); and ``keep_digests``,
which the verbs that write a run (``run``, ``rescore``, ``calibrate``) call when they finish."""

from __future__ import annotations

import argparse
import sys
import time

from harness.analysis.compare import Comparison
from harness.core.errors import HarnessError
from harness.report.terminal import print_json
from harness.store import Store
from harness.view.digest import DIGEST_MIN_ROWS, Written, has_digests, write_digests


def keep_digests(store: Store, run_id: str, comparison: Comparison | None = None, *, quiet: bool = False) -> Written | None:
    """The run's digests, kept when it is big enough for the viewer to be slow on it (``DIGEST_MIN_ROWS`` item rows);
    ``comparison``: the run's, at the default settings, when the caller computed it. A failure to keep them is a warning:
    the run itself is stored, and the viewer computes its pages without them."""
    if store.item_count(run_id) < DIGEST_MIN_ROWS:
        return None
    t0 = time.perf_counter()
    try:
        written = write_digests(store, run_id, comparison)
    except HarnessError as exc:
        print(f"warning: the viewer's digest of run {run_id} was not kept ({exc}); `harness digest {run_id}` tries again", file=sys.stderr)
        return None
    if not quiet:
        print(_line(written, time.perf_counter() - t0), file=sys.stderr)
    return written


def _line(written: Written, seconds: float) -> str:
    if written.stale:
        return f"run {written.run_id} changed while its digest was computed: not kept (`harness digest {written.run_id}` once it is done)"
    return (f"kept the viewer's digest of run {written.run_id} ({', '.join(dict.fromkeys(written.kinds))}; {written.size / 1e6:.1f} MB, "
            f"{seconds:.1f} s): harness view opens it at once")


def cmd_digest(args: argparse.Namespace) -> int:
    store = Store(args.db)
    try:
        if args.runs:
            runs = list(dict.fromkeys(store.resolve_run(r) for r in args.runs))
        else:
            runs = [r.id for r in store.runs() if r.status == "finished" and not has_digests(store, r.id)
                    and store.item_count(r.id) >= DIGEST_MIN_ROWS]
        out = []
        for run_id in runs:
            t0 = time.perf_counter()
            written = write_digests(store, run_id)
            out.append((written, time.perf_counter() - t0))
            if not args.json:
                print(_line(written, out[-1][1]))
    finally:
        store.close()
    if args.json:
        print_json([{"run_id": w.run_id, "revision": w.revision, "kinds": list(w.kinds), "bytes": w.size, "kept": not w.stale,
                     "seconds": round(s, 3)} for w, s in out])
    elif not runs:
        print(f"no run to digest: every finished run of {DIGEST_MIN_ROWS:,} item rows or more has a current digest (name a run to digest it anyway)")
    return 1 if any(w.stale for w, _ in out) else 0
