"""``harness draws``: few-shot settings over demonstration draws (mean, spread, CI over draws)."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness.analysis.draws import ONE_DRAW, draw_summaries
from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.report.terminal import console, print_json
from harness.store.store import Store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["latest"], help="run ids or prefixes (default: latest)")
    p.add_argument("--metric", help="metric (default: each task's first)")


def cmd_draws(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    try:
        runs = [store.resolve_run(r) for r in args.runs]
        rows = draw_summaries(store, runs, args.metric)
    finally:
        store.close()
    if not rows:
        raise HarnessError("no few-shot cells in these runs (draws only apply to shots > 0)")
    if args.json:
        print_json([r.to_json() for r in rows])
        return 0

    table = Table(title=f"few-shot draws · {', '.join(runs)} · CI: t over draws")
    for column in ("task", "prompt", "shots", "selector", "model", "metric", "draws", "mean [95% CI]", "sd", "min – max"):
        table.add_column(column)
    for r in rows:
        interval = r.interval()
        ci = f"{r.mean:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{r.mean:.3f} [—]"
        sd = f"{r.sd:.3f}" if len(r.draw_means) > 1 else "—"
        table.add_row(r.task, r.prompt, str(r.shots), r.selector, r.model, r.metric, str(len(r.draw_means)),
                      ci, sd, f"{min(r.draw_means):.3f} – {max(r.draw_means):.3f}")
    out = console()
    out.print(table)
    if any(len(r.draw_means) < 2 for r in rows):
        out.print(f"{ONE_DRAW} (—): a setting evaluated once has no spread over draws; run with --draws N (N ≥ 2), "
                  "or see `harness compare` for its CI over items", highlight=False)
    return 0


register_verb(Verb("draws", "few-shot settings over demonstration draws (run --draws N): mean, spread, CI over draws", _arguments, cmd_draws, ("db",)))
