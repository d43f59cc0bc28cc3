"""``harness plan``: how many items a comparison needs, before running it.

The answer depends on how often two cells disagree on an item (the discordance, for 0/1
metrics) or how much their item scores differ (the sd of the differences, for continuous
ones), far more than on the accuracy itself. A pilot run measures it; without one, 0/1 plans
assume independent errors, which overstates the discordance of two prompts of one model, so
the plan errs towards more items. The formulas (harness/stats/power.py) are those of the tests
harness runs, and tests/stats/test_simulation.py checks that a plan reaches its power.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict
from itertools import combinations

import numpy as np

from harness.analysis.summaries import CellSummary, aligned, clusters_for, summarize
from harness.core.errors import HarnessError
from harness.report.terminal import print_json
from harness.stats.difference import cluster_sums, design_effect
from harness.stats.power import Plan, independent_discordance, plan_binary, plan_continuous
from harness.store.store import Store


def pilot_estimates(cells: list[CellSummary]) -> tuple[str, float, float | None, float, int]:
    """(kind, discordance or sd, baseline, design effect, pairs) measured over every pair of cells."""
    if len(cells) < 2:
        raise HarnessError(f"harness plan --pilot: task '{cells[0].cell.task}' has one cell; a pilot needs two cells to measure how they differ")
    kind = cells[0].kind
    values, deffs = [], []
    for a, b in combinations(cells, 2):
        ids, _ = aligned([a, b])
        if len(ids) < 2:
            continue
        x, y = np.array([a.scores[i] for i in ids]), np.array([b.scores[i] for i in ids])
        d = x - y
        values.append(float(np.mean(d != 0)) if kind == "binary" else float(np.std(d, ddof=1)))
        labels = clusters_for([a, b], ids)
        if labels is not None:
            sums, sizes = cluster_sums(d, labels)
            deffs.append(design_effect(d, sums, sizes))
    if not values:
        raise HarnessError("harness plan --pilot: no two cells of the pilot share items")
    baseline = statistics.median(s.interval.mean for s in cells) if kind == "binary" else None
    return kind, float(statistics.median(values)), baseline, float(statistics.median(deffs)) if deffs else 1.0, len(values)


def make_plans(args: argparse.Namespace) -> list[tuple[str, Plan]]:
    for name in ("alpha", "power"):
        if not 0 < getattr(args, name) < 1:
            raise HarnessError(f"harness plan: --{name} must be between 0 and 1")
    if not args.mde > 0:
        raise HarnessError("harness plan: --mde must be a positive difference (0.03 = 3 points for accuracy)")
    if args.cells < 2:
        raise HarnessError("harness plan: --cells must be at least 2")
    options = {"alpha": args.alpha, "power": args.power, "cells": args.cells, "margin": args.margin}
    if args.pilot:
        store = Store.open_read_only(args.db)
        run = store.resolve_run(args.pilot)
        summaries = summarize(store, [run], args.metric)
        by_task: dict[str, list[CellSummary]] = {}
        for s in summaries:
            by_task.setdefault(s.cell.task, []).append(s)
        if args.task:
            if args.task not in by_task:
                raise HarnessError(f"harness plan --pilot {run}: no task '{args.task}' (it has: {', '.join(sorted(by_task))})")
            by_task = {args.task: by_task[args.task]}
        plans = []
        for task, cells in sorted(by_task.items()):
            kind, spread, baseline, deff, pairs = pilot_estimates(cells)
            source = f"pilot run {run}: median over {pairs} cell pair(s) of {cells[0].metric}"
            plan = (plan_binary(args.mde, spread, deff=deff, baseline=baseline, source=source, **options) if kind == "binary"
                    else plan_continuous(args.mde, spread, deff=deff, source=source, **options))
            plans.append((task, plan))
        return plans
    if args.sd is not None:
        return [("", plan_continuous(args.mde, args.sd, source="given", **options))]
    if args.discordance is not None:
        if not 0 < args.discordance <= 1:
            raise HarnessError("harness plan: --discordance is a share of items, in (0, 1]")
        return [("", plan_binary(args.mde, args.discordance, baseline=args.baseline, source="given", **options))]
    if args.baseline is None:
        raise HarnessError("harness plan: give --pilot RUN, or --discordance (0/1 metrics), or --sd (continuous), "
                           "or at least --baseline to assume independent errors")
    if not 0 < args.baseline < 1:
        raise HarnessError("harness plan: --baseline is a score in (0, 1)")
    discordance = independent_discordance(args.baseline, args.mde)
    return [("", plan_binary(args.mde, discordance, baseline=args.baseline,
                             source="assumed: independent errors at the baseline (conservative; a pilot run is better)", **options))]


def cmd_plan(args: argparse.Namespace) -> int:
    plans = make_plans(args)
    if args.json:
        print_json([{"task": task or None, **asdict(plan), "items": plan.items} for task, plan in plans])
        return 0
    for task, plan in plans:
        head = f"{task}: " if task else ""
        spread = f"discordance {plan.discordance:.3f}" if plan.kind == "binary" else f"sd of differences {plan.sd:.3g}"
        cells = f"any of {plan.cells} cells (all {plan.cells * (plan.cells - 1) // 2} pairs adjusted, α per pair {plan.alpha:.2g})" \
            if plan.cells > 2 else f"two cells (α {plan.alpha:g})"
        print(f"{head}to detect a difference of {plan.mde:g} between {cells} with {plan.power:.0%} power: "
              f"{plan.items_detect:,} items per cell")
        if plan.items_equivalence is not None:
            print(f"{head}to show equivalence within ±{args.margin:g} when there is no difference, with {plan.power:.0%} power: "
                  f"{plan.items_equivalence:,} items")
        print(f"{head}  from {spread} ({plan.source})" + (f", design effect {plan.deff:.2f}" if plan.deff > 1 else ""))
    return 0
