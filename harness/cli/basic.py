"""Handlers of ``validate``, ``run``, ``show`` and ``cache`` (their options:
harness/cli/options/basic.py); imported only when one of these verbs runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.analysis.compare import compare_runs
from harness.backends import option_problem
from harness.cli.anchors import anchored_estimates, anchors_json, print_estimates
from harness.cli.decide import cmd_diff
from harness.cli.digest import keep_digests
from harness.cli.race import race_fields
from harness.cli.verbs import sibling_hint
from harness.core.errors import HarnessError, existing_dir
from harness.core.progress import verbose_output
from harness.core.yamlfile import read_yaml_mapping, validate
from harness.fewshot.selectors import SELECTORS, demonstration_warnings, item_rng
from harness.prompts.messages import prompt_text
from harness.prompts.template import available_prompts, load_prompt
from harness.report.aggregates import aggregates_json, print_aggregates
from harness.report.ledger import print_ledger
from harness.report.terminal import comparison_tables, print_json
from harness.report.terminal import console as make_console
from harness.runner.execute import RunSummary, run_experiment
from harness.runner.ledger import cell_costs, cost_dict
from harness.runner.planning import check_renders
from harness.runner.spec import ExperimentSpec
from harness.scoring.checks import check_task
from harness.store.store import Store
from harness.tasks.subsets import select_items
from harness.tasks.task import find_task


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.rule import Rule

    task = check_task(find_task(args.task, args.tasks_dir, args.data_dir))
    splits = [s for s in ("test", "fewshot", "validation", "train") if task.has_split(s)]
    counts = {s: len(task.items(s)) for s in splits}  # reads and checks every row

    console = make_console()
    console.print(f"[bold]{task.name}[/] ({task.spec.type}) OK: " + ", ".join(f"{s}: {n} rows" for s, n in counts.items()))
    names = args.prompt or sorted(available_prompts(task, args.prompts_dir))
    missing = [p for p in task.spec.prompts if p not in available_prompts(task, args.prompts_dir)]
    if missing:
        raise HarnessError(f"{task.yaml_path}: field 'prompts' names variants with no template file: {', '.join(missing)}")
    pool = task.items(args.fewshot_split) if args.shots else []
    selector = SELECTORS.get(args.selector)(pool) if args.shots else None
    templates = [load_prompt(task, name, args.prompts_dir) for name in names]
    for line in demonstration_warnings(task, templates, [args.shots], args.split, args.fewshot_split):
        print(f"warning: {line}", file=sys.stderr)
    if (args.sample is not None and args.sample < 1) or args.n < 1:
        raise HarnessError("harness validate: -n and --sample take a number of rows >= 1")
    # every item of the split with every template, and every demonstration row, as ``run`` checks them at planning:
    # a field missing in row 300 is found here, not only in the -n rows shown
    demonstrations = task.items(args.fewshot_split) if task.has_split(args.fewshot_split) else []
    for template in templates:
        check_renders(task, template, task.items(args.split), demonstrations, args.fewshot_split)
    examples = select_items(task, task.items(args.split), limit=None if args.sample else args.n, sample=args.sample,
                            stratify=args.stratify, seed=args.seed)
    for name, template in zip(names, templates):
        for item in examples:
            shots = selector.select(item, args.shots, item_rng(args.seed, item.id)) if selector else []
            rendered = template.render(task, item, shots)
            console.print(Rule(f"{name} · item {item.id}"))
            console.print(prompt_text(rendered.prompt), markup=False, highlight=False)
            if rendered.continuations:
                console.print(f"continuations: {list(rendered.continuations)}  target: {item.target}", markup=False)
            else:
                console.print(f"target: {list(item.target) if isinstance(item.target, tuple) else item.target}", markup=False)
    return 0


def _experiment_file(path: Path) -> dict[str, Any]:
    """The experiment YAML file's fields; a task folder or a task name given in its place (``harness run capitals``) says --task."""
    if path.is_dir():
        raise HarnessError(f"{path} is a folder, not an experiment YAML file: to evaluate the task in it, give --task {path}")
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        raise HarnessError(f"no experiment file {path}: the first argument of `harness run` is an experiment YAML file; "
                           f"to evaluate a task named {path}, give --task {path}")
    return read_yaml_mapping(path, "experiment")


def _experiment(args: argparse.Namespace) -> Any:
    raw: dict[str, Any] = _experiment_file(args.experiment) if args.experiment else {}
    overrides = {
        "tasks": args.tasks, "prompts": args.prompts, "shots": args.shots, "selectors": args.selectors, "limit": args.limit,
        "sample": args.sample, "stratify": args.stratify, "max_tokens": args.max_tokens, "draws": args.draws,
        "seed": args.seed, "split": args.split, "fewshot_split": args.fewshot_split, "anchors": args.anchors,
    }
    if args.anchors:  # --anchors names the items: it replaces the file's subset size
        raw.pop("sample", None), raw.pop("limit", None)
    for flag, other in (("sample", "limit"), ("limit", "sample")):  # a subset size on the command line replaces the file's
        if overrides[flag] is not None and overrides[other] is None:
            raw.pop(other, None)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if args.models is not None:
        raw["models"] = args.models
    for key, values in (("tasks_dirs", args.tasks_dir), ("prompts_dirs", args.prompts_dir), ("data_dirs", args.data_dir)):
        if values:
            raw[key] = [*raw.get(key, []), *map(str, values)]
    race_fields(args, raw, str(args.experiment or "command line"))
    if "tasks" not in raw:
        raise HarnessError("harness run: name at least one task (--task NAME) or give an experiment YAML file")
    spec = validate(ExperimentSpec, raw, args.experiment or "command line", "experiment")
    for key in ("tasks_dirs", "prompts_dirs", "data_dirs"):  # the flags' folders are checked already: these are the file's
        for folder in getattr(spec, key):
            try:
                existing_dir(folder, f"{args.experiment}: field '{key}'")
            except HarnessError as exc:
                hint = sibling_hint(Path(folder))
                raise HarnessError(f"{exc}.{hint}" if hint else str(exc)) from None
    if args.concurrency is not None and args.concurrency < 1:
        raise HarnessError("--concurrency must be at least 1")
    flags = {"adapter": "--adapter", "dtype": "--dtype", "device": "--device", "base_url": "--base-url", "concurrency": "--concurrency"}
    given = {"adapter": args.adapter or None, "dtype": args.dtype or None, "device": args.device or None, "base_url": _one_or_many(args.base_urls),
             "concurrency": args.concurrency}
    changes = {k: v for k, v in given.items() if v is not None}
    for model in spec.models:  # a flag applies to every model, so each must take it
        for key in changes:
            if not model.takes(key):
                raise HarnessError(f"{flags[key]} does not apply to model '{model.label}': {option_problem(model.backend, key)}")
    if changes:
        spec = spec.model_copy(update={"models": [m.model_copy(update=changes) for m in spec.models]})
    return spec


def _one_or_many(urls: list[str] | None) -> str | list[str] | None:
    """One --base-url is a string (the identity runs made before lists existed have), several a list."""
    if not urls:
        return None
    return urls[0] if len(urls) == 1 else sorted(urls)  # sorted as the options model sorts a list


def cmd_run(args: argparse.Namespace) -> int:
    spec = _experiment(args)
    opened: list[Store] = []

    def open_store() -> Store:  # once the run is planned: a task, template or model error leaves no database behind
        opened.append(Store(args.db))
        return opened[-1]

    try:
        # resume / response-cache lines go to stderr: stdout stays the table or one JSON document
        with verbose_output(args.verbose):
            summary = run_experiment(spec, open_store, new=args.new, show_progress=not args.quiet and not args.json,
                                     log=lambda line: print(line, file=sys.stderr, flush=True))
        return _report_run(args, summary, opened[0])
    finally:  # closed here, not by the garbage collector: the last connection's close checkpoints the WAL into the file
        for store in opened:
            store.close()


def _report_run(args: argparse.Namespace, summary: RunSummary, store: Store) -> int:
    comparison = compare_runs(store, [summary.run_id])
    summaries = [cell.summary for ranking in comparison.rankings for cell in ranking.cells]
    info = {
        "run_id": summary.run_id, "resumed": summary.resumed, "cells": len(summary.cells), "items_written": summary.items_written,
        "requests": summary.requests, "cache_hits": summary.cache_hits, "backend_requests": summary.backend_requests,
        "db": str(args.db), "run_dir": str(summary.run_dir),
    }
    if summary.extra.get("backend_stats"):
        info["backend_stats"] = summary.extra["backend_stats"]
    info["warnings"] = store.run_config(summary.run_id).get("warnings", [])  # also printed to stderr before the run

    costs = cell_costs(store, [summary.run_id])
    anchored = anchored_estimates(store, summary.run_id)  # --anchors: each cell's estimated full-set score
    if args.json:
        print_json({**info, "ranking": comparison.rows(), **aggregates_json(store, summaries), "ledger": [cost_dict(c) for c in costs],
                    **({"anchors": [anchors_json(a, rows) for a, rows in anchored]} if anchored else {})})
        keep_digests(store, summary.run_id, comparison, quiet=args.quiet)
        return 0
    comparison_tables(comparison, make_console(args.wide))

    print_aggregates(store, summaries, make_console(args.wide))
    for anchors, rows in anchored:
        print_estimates(anchors, rows)
    print_ledger(costs, make_console(args.wide))
    for label, stats in summary.extra.get("backend_stats", {}).items():
        print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in stats.items() if v not in (None, {}, 0)))
    state = "resumed" if summary.resumed else "new"
    print(f"run {summary.run_id} ({state}): {summary.items_written} items written, {summary.requests} requests, "
          f"{summary.cache_hits} from cache, {summary.backend_requests} sent to the model. Stored in {args.db}, items in {summary.run_dir}/items.jsonl")
    keep_digests(store, summary.run_id, comparison, quiet=args.quiet)  # a big run's first view in harness view is then a read
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = Store.open_read_only(args.db)
    if args.diff:
        return cmd_diff(args, store)
    if args.run is None:
        rows: list[dict[str, Any]] = [{"id": r.id, "created_at": r.created_at, "status": r.status, **({"error": r.error} if r.error else {})}
                                       for r in store.runs()]
    else:
        run = store.resolve_run(args.run)
        rows = [{"cell_id": c.cell_id, "task": c.task, "prompt": c.prompt, "shots": c.shots, "selector": c.selector,
                 "model": c.model, "n_planned": c.n_planned} for c in store.cells([run])]
        if args.costs:
            costs = cell_costs(store, [run])
            if args.json:
                print_json([cost_dict(c) for c in costs])
            else:
                print_ledger(costs, make_console(getattr(args, "wide", False)))
            return 0
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print("  ".join(str(v) for v in row.values()))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    store = Store(args.db) if args.action == "clear" else Store.open_read_only(args.db)
    if args.action == "clear":
        result = {"db": str(args.db), "removed": store.clear_cache()}
        line = f"removed {result['removed']} cache entries"
    else:
        result = {"db": str(args.db), **store.cache_stats()}
        line = f"{result['entries']} cache entries in {args.db}"
    if args.json:
        print_json(result)
    else:
        print(line)
    return 0
