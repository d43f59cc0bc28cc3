"""CLI verbs for deciding: ``compare``, ``ab``, ``rescore``, ``report`` (and ``show --diff``).

Their options are in harness/cli/options/decide.py, which names these handlers for the verb
registry (harness/cli/verbs.py): this module is imported only when one of its verbs runs.
"""

from __future__ import annotations

import argparse
import sys

from harness.analysis.ab import ab_compare, cell_pairs, run_pair, tuned_spec
from harness.analysis.budget import budget_dict, under_budget
from harness.analysis.compare import compare_runs, find_cell, item_diff
from harness.backends import parse_model
from harness.cli.digest import keep_digests
from harness.core.errors import HarnessError
from harness.core.yamlfile import validate
from harness.report.ab import print_ab, with_checks
from harness.report.ledger import print_budgets, print_ledger
from harness.report.terminal import comparison_csv, comparison_tables, console, diff_view, pair_tables, print_json
from harness.runner.ledger import cell_costs, cost_dict
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tune.card import CARD_JSON, load_card
from harness.tune.overlap import check_overlap, check_overlap_runs
from harness.view.context import AbQuery
from harness.view.export import write_ab_report, write_report, write_tuning_report


def _comparison(args: argparse.Namespace, store: Store):  # type: ignore[no-untyped-def]

    runs = [store.resolve_run(r) for r in args.runs]
    return compare_runs(store, runs, args.metric, alpha=args.alpha, confidence=args.confidence, resamples=args.resamples,
                        seed=args.seed, tasks=args.only_tasks, margin=args.margin, unscorable=args.unscorable)


def cmd_compare(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    if args.budget is not None and args.budget_tokens is not None:
        raise HarnessError("give --budget MONEY or --budget-tokens N, not both")
    for flag, value in (("--budget", args.budget), ("--budget-tokens", args.budget_tokens)):
        if value is not None and not value >= 0:
            raise HarnessError(f"{flag} must be a number >= 0, got {value:g}")
    if args.csv and (args.budget is not None or args.budget_tokens is not None or args.costs):
        raise HarnessError("--csv prints the ranked cells only: the budget's marks and the ledger are in the terminal and in --json")
    comp = _comparison(args, store)
    budgets = (under_budget(store, comp, money_budget=args.budget, token_budget=args.budget_tokens, scope=args.budget_scope)
               if args.budget is not None or args.budget_tokens is not None else [])
    costs = cell_costs(store, comp.runs, [rc.summary.cell for r in comp.rankings for rc in r.cells]) if args.costs else []
    if args.json:
        body = comp.to_dict() if args.full else comp.rows()
        if budgets or args.costs:  # an object then: the rows (or the full comparison) with the budget's marks and the ledger
            body = {**(body if isinstance(body, dict) else {"cells": body}), **({"budgets": [budget_dict(b) for b in budgets]} if budgets else {}),
                    **({"ledger": [cost_dict(c) for c in costs]} if args.costs else {})}
        print_json(body)
    elif args.csv:
        sys.stdout.write(comparison_csv(comp))
    else:
        out = console(getattr(args, "wide", False))
        comparison_tables(comp, out)
        if args.pairs:
            pair_tables(comp, out)
        if costs:
            print_ledger(costs, out)
        if budgets:
            print_budgets(comp, budgets, out)
    return 0


def cmd_diff(args: argparse.Namespace, store: Store) -> int:
    runs = [store.resolve_run(args.run)] if args.run else None
    a, b = (find_cell(store, ref, runs) for ref in args.diff)
    metric, diffs, shared = item_diff(store, a, b, args.metric)

    def label(c) -> str:  # type: ignore[no-untyped-def]
        return f"{c.run_id}:{c.cell_id} ({c.task} · {c.prompt} · {c.shots}-shot · {c.model})"

    if args.json:
        print_json({"a": label(a), "b": label(b), "metric": metric, "shared_items": shared, "disagree": [d.__dict__ for d in diffs]})
    else:
        diff_view(label(a), label(b), metric, diffs, shared, limit=args.limit)
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    store = Store(args.db)
    base = parse_model(args.base)
    overrides = {k: v for k, v in {"dtype": args.dtype, "device": args.device}.items() if v}
    base = base.model_copy(update=overrides)
    if args.base_run or args.tuned_run:
        if not (args.base_run and args.tuned_run):
            raise HarnessError("harness ab: reuse needs both --base-run and --tuned-run")
        base_run, tuned_run = store.resolve_run(args.base_run), store.resolve_run(args.tuned_run)
        base_label = parse_model(args.base).label if args.base else None
        tuned_label = tuned_spec(parse_model(args.base), args.tuned, args.adapter).label if (args.tuned or args.adapter) else None
        overlap = check_overlap_runs(store, base_run, tuned_run, tuned_label=tuned_label, allow=args.allow_overlap)
    else:
        tuned = tuned_spec(base, args.tuned, args.adapter).model_copy(update=overrides)
        spec = _ab_spec(args)
        overlap = check_overlap(spec, tuned, allow=args.allow_overlap)  # before any model runs: refuse scoring training items
        base_run, tuned_run = run_pair(spec, base, tuned, store, reuse=not args.no_reuse, show_progress=not args.quiet and not args.json)
        base_label, tuned_label = base.label, tuned.label
    report = ab_compare(store, base_run, tuned_run, base_label=base_label, tuned_label=tuned_label, metric=args.metric,
                        alpha=args.alpha, resamples=args.resamples, seed=args.seed, confidence=args.confidence,
                        margin=args.margin, unscorable=args.unscorable)
    report = with_checks(report, store, overlap)
    if args.json:
        print_json({**report.to_dict(), "overlap": overlap.to_dict(),
                    "diff_commands": [f"harness show --diff {a} {b}" for a, b in cell_pairs(report)]})
    else:
        print_ab(report, console(args.wide))
        for a, b in cell_pairs(report)[:5]:
            print(f"  harness show --diff {a} {b}")
    if args.html:  # the A/B page of harness view as one file, of the A/B printed above
        write_ab_report(store, AbQuery(tuned_run, base_run, base_label, tuned_label, _ab_options(args)), args.html, computed=report)
        print(f"wrote {args.html} (A/B verdict, the same numbers as above); open it in any browser, no network needed", file=sys.stderr)
    return 0


def _ab_spec(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    if not args.tasks:
        raise HarnessError("harness ab: name at least one task (--task NAME), or reuse stored runs with --base-run/--tuned-run")
    raw = {"tasks": args.tasks, "prompts": args.prompts, "shots": args.shots, "selectors": args.selectors, "limit": args.limit,
           "sample": args.sample, "stratify": args.stratify, "split": args.split, "tasks_dirs": [str(d) for d in args.tasks_dir],
           "prompts_dirs": [str(d) for d in args.prompts_dir], "data_dirs": [str(d) for d in args.data_dir]}
    return validate(ExperimentSpec, {k: v for k, v in raw.items() if v is not None}, "command line", "experiment")


def cmd_rescore(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db) if args.dry_run else Store(args.db)
    run = store.resolve_run(args.run)
    result = rescore_run(store, run, args.metric, write=not args.dry_run, tasks_dirs=args.tasks_dir, data_dirs=args.data_dir)
    if result.written:
        keep_digests(store, run, quiet=args.json)  # the scores changed: a big run's digest is computed again
    if args.json:
        print_json({**result.__dict__, "checks": [{**c.__dict__, "changed": c.changed} for c in result.checks],
                    "reproduced": result.reproduced})
        return 0
    print(f"run {run}: rescored {result.items} items from stored responses (no model calls)")
    for task, source in result.task_sources.items():
        print(f"  task {task}: {source}")
    for check in result.checks:
        state = "reproduced exactly" if check.changed == 0 else f"{check.changed} changed"
        print(f"  {check.metric}: {check.same}/{check.items} items {state}")
    for example in result.examples:
        print(f"    {example['cell_id']} {example['item_id']} {example['metric']}: stored {example['stored']} -> {example['rescored']}")
    if result.added:
        print(f"  added: {', '.join(result.added)}" + ("" if result.written else " (dry run: not written)"))
    print("scores written" if result.written else "nothing written")
    return 0


def _ab_options(args: argparse.Namespace) -> dict[str, object]:
    return {"metric": args.metric, "alpha": args.alpha, "resamples": args.resamples, "seed": args.seed, "confidence": args.confidence,
            "margin": args.margin, "unscorable": args.unscorable}


def cmd_report(args: argparse.Namespace) -> int:
    """The run page of ``harness view`` for the runs' comparison (with the cards of any tuned model in them), the A/B page
    with ``--ab``, or, with --tune and no runs, the tuning cards alone: one self-contained HTML file."""
    if args.output.is_dir():
        raise HarnessError(f"harness report: -o/--output '{args.output}' is a folder; give the HTML file to write, e.g. {args.output / 'report.html'}")
    named = [load_card(folder) for folder in args.tune]
    missing = [str(f) for f, c in zip(args.tune, named) if c is None]
    if missing:
        raise HarnessError(f"harness report --tune: {', '.join(repr(m) for m in missing)} {'holds' if len(missing) == 1 else 'hold'} no "
                           f"{CARD_JSON} (is it a `harness tune -o` folder?)")
    cards = [c for c in named if c is not None]
    if args.tune and not args.runs and not args.ab:
        write_tuning_report(cards, args.output)
        print(f"wrote {args.output} (tuning curves of {len(cards)} run(s)); open it in any browser, no network needed")
        return 0
    store = Store.open_read_only(args.db)
    try:
        if args.ab:
            if args.runs:
                raise HarnessError("harness report --ab BASE_RUN TUNED_RUN takes no other runs")
            base_run, tuned_run = (store.resolve_run(r) for r in args.ab)
            write_ab_report(store, AbQuery(tuned_run, base_run, options=_ab_options(args)), args.output)
            print(f"wrote {args.output} (A/B of tuned run {tuned_run} against base run {base_run}); open it in any browser, no network needed")
            return 0
        args.runs = args.runs or ["latest"]
        comp = _comparison(args, store)
        page = write_report(store, comp, args.output, diff_limit=args.diff_limit, cards=cards)
    finally:
        store.close()
    cells = sum(len(r.cells) for r in comp.rankings)
    curves = f", tuning curves of {len(page.cards)} run(s)" if page.cards else ""
    print(f"wrote {args.output} ({len(comp.rankings)} task(s), {cells} cells{curves}); open it in any browser, no network needed")
    return 0
