"""``harness optimize TASK --prompt START``: candidates raced on a search split, the winner confirmed on held-out items
(harness/tune/optimize.py). Prints the confirmation first; the search second, its scores marked optimistic."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.core.progress import verbose_output
from harness.core.yamlfile import validate
from harness.prompts.formats import read_instructions
from harness.report.terminal import print_json
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tune.optimize import OPTIMISTIC, OptimizeReport, OptimizeSpec, optimize


def _spec(args: argparse.Namespace) -> OptimizeSpec:
    raw: dict[str, Any] = {"tasks": [args.task], "prompts": [args.start], "shots": args.shots, "selectors": args.selectors,
                           "models": [args.model], "seed": args.seed, "split": args.split, "fewshot_split": args.fewshot_split,
                           "tasks_dirs": [str(d) for d in args.tasks_dir], "prompts_dirs": [str(d) for d in args.prompts_dir],
                           "data_dirs": [str(d) for d in args.data_dir]}
    for key in ("limit", "sample", "stratify"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    experiment = validate(ExperimentSpec, raw, "command line", "harness optimize")
    instructions = tuple(read_instructions(args.instructions)) if args.instructions else ()
    spec = OptimizeSpec(experiment, args.start, tuple(args.shots), tuple(args.selectors), args.proposer, args.k, instructions,
                        args.search_share, args.alpha, args.race_round, args.output or OptimizeSpec.output)
    spec.check()
    return spec


def cmd_optimize(args: argparse.Namespace) -> int:
    spec = _spec(args)
    opened: list[Store] = []

    def open_store() -> Store:  # once the task, START and the model are checked: a typo leaves no database behind
        opened.append(Store(args.db))
        return opened[-1]

    try:
        with verbose_output(args.verbose):
            report = optimize(spec, open_store, show_progress=not args.quiet and not args.json,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        for store in opened:
            store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report)
    return 0


def _value(report: OptimizeReport, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    points = report.race.bounds == (0.0, 1.0)
    shown = value * 100 if points else value
    return f"{shown:+.1f}" if signed and points else f"{shown:+.4f}" if signed else f"{shown:.1f}" if points else f"{shown:.4f}"


def _setting(shots: int, selector: str) -> str:
    return f"{shots}-shot" + (f" {selector}" if selector != "none" else "")


def print_report(r: OptimizeReport) -> None:
    arrow = "↑" if r.higher_is_better else "↓"
    units = " (points)" if r.race.bounds == (0.0, 1.0) else ""
    print(f"optimize {r.task} from {r.start} · {_setting(*r.start_setting)} — {r.metric} {arrow}{units}; proposer: {r.proposer}; "
          f"split (seed {r.split.seed}): {len(r.split.search)} search items, {len(r.split.heldout)} held out")
    w = r.winner
    c = r.confirmation
    if w.start or c is None:
        print(f"\nthe search's winner is START itself ({r.start} · {_setting(*r.start_setting)}): no candidate beat it on the search items; "
              "nothing confirmed, nothing written")
    else:
        print(f"\nconfirmation on {c.n} held-out items (pre-registered: winner − START, item pairs, {c.test}, α = {c.alpha:g}):")
        print(f"  winner: {w.name} · {_setting(w.shots, w.selector)} ({w.origin})")
        print(f"  START {_value(r, c.start_mean)}  winner {_value(r, c.winner_mean)}  Δ {_value(r, c.difference, True)} "
              f"[{_value(r, c.low, True)}, {_value(r, c.high, True)}] ({c.confidence:.0%} CI)  p = {c.p_value:.4g}  verdict: {c.verdict}")
        if c.dropped:
            print("  unpaired: " + ", ".join(f"{n} {why}" for why, n in c.dropped.items()))
    race = r.race
    print(f"\nsearch: run {r.search_run}, the race on the {len(r.split.search)} search items: {race.reason} after {race.rounds} round(s), "
          f"{race.evaluations} item evaluations, {r.search_requests} requests ({r.search_sent} sent to the model, {r.search_cache_hits} from the cache), "
          f"{race.tokens} scored tokens; its ledger: harness show {r.search_run} --costs")
    dropped = ", ".join(f"{n} {why}" for why, n in r.proposals.dropped.items())
    print(f"  candidates: {len(r.proposals.candidates)} kept of {r.proposals.proposed} proposed" + (f" (dropped: {dropped})" if dropped else ""))
    for example in r.proposals.examples[:3]:
        print(f"    dropped: {example}")
    width = max(len(e.name) + len(_setting(e.shots, e.selector)) + 3 for e in r.entries)
    for e in r.entries:
        name = f"{e.name} · {_setting(e.shots, e.selector)}"
        when = f"out at round {e.round} ({e.items} items), beaten by {e.beaten_by}" if e.status == "eliminated" else f"{e.status} ({e.items} items)"
        tag = "START " if e.start else "      "
        print(f"  {tag}{name:<{width}}  {_value(r, e.mean):>6}  {when}")
        if not e.start:
            print(f"        {'':<{width}}          {e.origin}")
    print(f"  {OPTIMISTIC}: winner {_value(r, w.mean)}" + ("" if w.start else " — the confirmation above is the result"))
    if r.written is not None:
        print(f"\nwritten: {r.written}\nrun it: {r.run_command}")
