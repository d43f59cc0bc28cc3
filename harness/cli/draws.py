"""``harness draws``: few-shot settings over demonstration draws (mean, spread, CI over draws)."""

from __future__ import annotations

import argparse

from rich.text import Text

from harness.analysis.draws import ONE_DRAW, draw_summaries
from harness.core.errors import HarnessError
from harness.report.terminal import Col, console, legend_text, model_aliases, print_json, print_table
from harness.store.store import Store


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

    out = console(args.wide)
    models = model_aliases([r.model for r in rows])
    if models:
        out.print(Text(legend_text("models", models)))
    columns = [Col("task", wrap=True), Col("prompt", wrap=True), Col("shots", "right"), Col("selector", wrap=True, drop=3),
               Col("model", wrap=True), Col("metric", wrap=True, drop=4), Col("draws", "right"), Col("mean [95% CI]", "right"),
               Col("sd", "right", drop=2), Col("min – max", "right", drop=1)]
    table = []
    for r in rows:
        interval = r.interval()
        ci = f"{r.mean:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{r.mean:.3f} [—]"
        sd = f"{r.sd:.3f}" if len(r.draw_means) > 1 else "—"
        table.append([r.task, r.prompt, str(r.shots), r.selector, models.get(r.model, r.model), r.metric, str(len(r.draw_means)),
                      ci, sd, f"{min(r.draw_means):.3f} – {max(r.draw_means):.3f}"])
    print_table(out, f"few-shot draws · {', '.join(runs)} · CI: t over draws", columns, table)
    if any(len(r.draw_means) < 2 for r in rows):
        out.print(f"{ONE_DRAW} (—): a setting evaluated once has no spread over draws; run with --draws N (N ≥ 2), "
                  "or see `harness compare` for its CI over items", highlight=False)
    return 0
