"""CLI verbs for deciding: ``compare``, ``ab``, ``rescore``, ``report`` (and ``show --diff``).

Each registers in the verb registry (harness/cli/verbs.py), so the statistics side can grow
without touching the rest of the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from harness.analysis.ab import ab_compare, cell_pairs, run_pair, tuned_spec
from harness.analysis.compare import compare_runs, find_cell, item_diff
from harness.analysis.degenerate import degenerate_cells
from harness.backends import parse_model
from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.core.yamlfile import validate
from harness.report.ab import print_ab
from harness.report.html import write_ab_report, write_report
from harness.report.terminal import comparison_csv, comparison_tables, diff_view, pair_tables, print_json
from harness.report.tune import cards_for_runs, tuning_section, write_tuning_report
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec
from harness.stats.basics import DEFAULT_RESAMPLES
from harness.store.store import DEFAULT_DB, Store
from harness.tune.card import load_card
from harness.tune.overlap import check_overlap, check_overlap_runs


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _level(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _verdict_options(p: argparse.ArgumentParser) -> None:
    """The options every verdict-giving verb shares (compare, ab, report)."""
    p.add_argument("--alpha", type=_level, default=0.05, help="error rate of every verdict (default: %(default)s)")
    p.add_argument("--confidence", type=_level, default=0.95, help="interval level (default: %(default)s)")
    p.add_argument("--margin", type=_positive, help="equivalence margin in metric units (0.02 = 2 points): a difference "
                   "this small does not matter; enables 'equivalent' verdicts and items-needed estimates")
    p.add_argument("--unscorable", choices=["wrong", "exclude"], default="wrong",
                   help="items whose score is NaN: score them as wrong (default) or exclude them; counted either way")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every resampling (default: %(default)s)")


def _stat_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="metric to rank by (default: each task's first)")
    _verdict_options(p)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=["latest"], help="run ids or prefixes (default: latest)")
    p.add_argument("--metric", help="metric to rank by (default: each task's first)")
    add_compare_options(p)


def add_compare_options(p: argparse.ArgumentParser) -> None:
    """The options of ``compare`` after --db, --json, runs and --metric."""
    p.add_argument("--csv", action="store_true", help="print the ranked cells as CSV")
    p.add_argument("--full", action="store_true", help="with --json: an object with cells, the possibly-best sets with every "
                   "pair's adjusted p, spread, rank stability and warnings")
    p.add_argument("--task", nargs="+", dest="only_tasks", help="only these tasks")
    p.add_argument("--pairs", action="store_true", help="also print every pair of cells with its adjusted p-value")
    _verdict_options(p)


def add_show_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="cells (id, prefix or RUN:CELL): items where they disagree")
    p.add_argument("--metric", help="metric for --diff (default: A's first)")
    p.add_argument("--limit", type=int, default=20, help="--diff: items shown (default: %(default)s)")


def _ab_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="base model BACKEND:MODEL (default: the embedded Gemma 3 270M)")
    p.add_argument("--tuned", help="tuned checkpoint BACKEND:MODEL")
    p.add_argument("--adapter", help="PEFT/LoRA adapter folder applied to the base (the tuned model)")
    p.add_argument("--task", "-t", nargs="+", dest="tasks", help="task names or folders")
    p.add_argument("--prompt", "-p", nargs="+", dest="prompts")
    p.add_argument("--shots", "-k", nargs="+", type=int)
    p.add_argument("--selector", nargs="+", dest="selectors")
    p.add_argument("--limit", type=int, help="first N items of each task")
    p.add_argument("--sample", type=int, help="a seeded random sample of N items of each task (the run seed, 1234), as `run --sample`")
    p.add_argument("--stratify", metavar="EXPR", help="with --sample or --limit: allocate the items proportionally over this field "
                   "or expression over the row, e.g. label")
    p.add_argument("--split")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device")
    p.add_argument("--base-run", help="reuse this stored run for the base instead of running")
    p.add_argument("--tuned-run", help="reuse this stored run for the tuned model instead of running")
    p.add_argument("--no-reuse", action="store_true", help="run both even if identical finished runs are stored")
    p.add_argument("--html", type=Path, metavar="PATH", help="also write the A/B verdict as a self-contained HTML report")
    p.add_argument("--allow-overlap", action="store_true",
                   help="proceed although the tuned model was trained or selected on scored items (the result is flagged)")
    p.add_argument("--quiet", action="store_true")
    _stat_options(p)


def _rescore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest")
    p.add_argument("--metric", nargs="+", default=[], help="metrics to add (the run's own are always recomputed)")
    p.add_argument("--dry-run", action="store_true", help="check only; do not write the new scores")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=Path(os.environ.get("HARNESS_DB", DEFAULT_DB)), help="SQLite results file")
    p.add_argument("runs", nargs="*", help="runs to compare (default: latest; none when only --tune is given)")
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"))
    p.add_argument("--task", nargs="+", dest="only_tasks")
    p.add_argument("--diff-limit", type=int, default=30, help="disagreeing items listed per task (default: %(default)s)")
    p.add_argument("--ab", nargs=2, metavar=("BASE_RUN", "TUNED_RUN"),
                   help="an A/B report of two runs (as `harness ab --base-run --tuned-run` prints it) instead of a ranking")
    p.add_argument("--tune", nargs="+", type=Path, default=[], metavar="OUT",
                   help="`harness tune` output folder(s): their training/eval curves (alone, or appended to the named runs)")
    _stat_options(p)


def _comparison(args: argparse.Namespace, store: Store):  # type: ignore[no-untyped-def]

    runs = [store.resolve_run(r) for r in args.runs]
    return compare_runs(store, runs, args.metric, alpha=args.alpha, confidence=args.confidence, resamples=args.resamples,
                        seed=args.seed, tasks=args.only_tasks, margin=args.margin, unscorable=args.unscorable)


def cmd_compare(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    comp = _comparison(args, store)
    if args.json:
        print_json(comp.to_dict() if args.full else comp.rows())
    elif args.csv:
        sys.stdout.write(comparison_csv(comp))
    else:
        comparison_tables(comp)
        if args.pairs:
            pair_tables(comp)
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
        print_ab(report)
        for a, b in cell_pairs(report)[:5]:
            print(f"  harness show --diff {a} {b}")
    if args.html:
        _write_ab_html(report, store, args.html)
    return 0


def with_checks(report, store: Store, overlap=None):  # type: ignore[no-untyped-def]
    """The A/B report with its loud flags: overlap with the tuned model's training/selection items, degenerate cells."""
    flags = overlap.flag_lines() if overlap is not None else []
    warnings = overlap.warning_lines() if overlap is not None else []
    notes = overlap.note_lines() if overlap is not None else []
    flags += [d.line for d in degenerate_cells(store, [report.base_run, report.tuned_run])]
    return dataclasses.replace(report, flags=[*report.flags, *flags], warnings=[*report.warnings, *warnings],
                               notes=[*report.notes, *notes])


def _write_ab_html(report, store: Store, path: Path, diff_limit: int = 30) -> None:  # type: ignore[no-untyped-def]

    cards = {c.folder.resolve(): c for c in cards_for_runs(store, [report.base_run, report.tuned_run]) if c is not None}
    write_ab_report(report, path, store, diff_limit, appendix=[tuning_section(c) for c in cards.values()])
    print(f"wrote {path} (A/B verdict, the same numbers as above); open it in any browser, no network needed", file=sys.stderr)


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


def cmd_report(args: argparse.Namespace) -> int:
    """Runs' comparison, with the curves of any tuned model in them appended; or, with --tune and no runs, curves alone."""
    if args.tune and not args.runs:
        written = write_tuning_report(args.tune, args.output)
        print(f"wrote {args.output} (tuning curves of {len(written)} run(s)); open it in any browser, no network needed")
        return 0
    if args.ab:
        if args.runs:
            raise HarnessError("harness report --ab BASE_RUN TUNED_RUN takes no other runs")

        store = Store.open_read_only(args.db)
        base_run, tuned_run = (store.resolve_run(r) for r in args.ab)
        report = ab_compare(store, base_run, tuned_run, metric=args.metric, alpha=args.alpha, resamples=args.resamples,
                            seed=args.seed, confidence=args.confidence, margin=args.margin, unscorable=args.unscorable)

        overlap = check_overlap_runs(store, base_run, tuned_run, tuned_label=report.tuned, allow=True)  # a report shows, never refuses
        _write_ab_html(with_checks(report, store, overlap), store, args.output, args.diff_limit)
        return 0
    args.runs = args.runs or ["latest"]
    store = Store.open_read_only(args.db)
    comp = _comparison(args, store)
    named = [load_card(folder) for folder in args.tune]
    missing = [str(f) for f, c in zip(args.tune, named) if c is None]
    if missing:
        raise HarnessError(f"harness report --tune: no tuning card in {', '.join(missing)} (is it a `harness tune -o` folder?)")
    cards = {c.folder.resolve(): c for c in [*cards_for_runs(store, comp.runs), *named] if c is not None}
    path = write_report(comp, args.output, store, args.diff_limit, appendix=[tuning_section(c) for c in cards.values()])
    cells = sum(len(r.cells) for r in comp.rankings)
    curves = f", tuning curves of {len(cards)} run(s)" if cards else ""
    print(f"wrote {path} ({len(comp.rankings)} task(s), {cells} cells{curves}); open it in any browser, no network needed")
    return 0


register_verb(Verb("compare", "rank the cells of stored runs with 95%% CIs", _compare_arguments, cmd_compare, ("db",)))
register_verb(Verb("ab", "A/B a tuned model (checkpoint or --adapter) against its base on identical prompts and items", _ab_arguments,
                   cmd_ab, ("db", "dirs")))
register_verb(Verb("rescore", "recompute a run's scores from stored responses (no model), optionally adding metrics", _rescore_arguments,
                   cmd_rescore, ("db", "dirs")))
register_verb(Verb("report", "write one self-contained HTML report (plots, ranked table, disagreeing items)", _report_arguments,
                   cmd_report))
