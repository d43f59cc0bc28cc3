"""``harness import promptsource DATASET -o prompts/TASK`` and ``harness import lm-eval TASK.yaml -o tasks/NAME``:
bring the prompt variants and tasks users already have."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.paths import cache_dir
from harness.prompts.lm_eval_import import convert, read_config, task_files
from harness.prompts.promptsource import archive_path, import_templates
from harness.prompts.template import load_prompt
from harness.report.terminal import console, print_json
from harness.tasks.task import Task, find_task


def cmd_import(args: argparse.Namespace) -> int:
    if args.output is None:
        raise HarnessError(f"harness import {args.kind}: give -o/--output OUT, the folder to write")
    if args.kind == "lm-eval":
        return _import_lm_eval(args)
    source = args.source or archive_path(cache_dir() / "promptsource")
    task = find_task(args.task, args.tasks_dir, args.data_dir) if args.task else None
    result = import_templates(args.dataset, args.output, source, _fields(args.field))
    kept, skipped = list(result.written), list(result.skipped)
    if task is not None:
        for path in list(kept):
            problem = _fails_on(task, path)
            if problem:
                path.unlink()
                kept.remove(path)
                skipped.append((path.stem, f"does not render on task '{task.name}': {problem}"))
    if not kept:
        raise HarnessError(f"no PromptSource template of '{args.dataset}' could be imported: "
                           + "; ".join(f"{name}: {why}" for name, why in skipped))
    if args.json:
        print_json({"written": [str(p) for p in kept], "skipped": [{"name": n, "why": w} for n, w in skipped]})
        return 0
    out = console()
    out.print(f"{len(kept)} variants written to {args.output}: {', '.join(p.stem for p in kept)}", highlight=False)
    for name, why in skipped:
        out.print(f"  skipped {name}: {why}", highlight=False)
    target = f" --task {args.task}" if args.task else ""
    out.print(f"compare them: harness run{target} --prompts-dir {args.output.parent} --prompt {' '.join(p.stem for p in kept[:3])} ...",
              highlight=False)
    return 0


def _import_lm_eval(args: argparse.Namespace) -> int:
    files = task_files(args.dataset)
    if len(files) > 1:  # a group or tag: one task folder per member, under OUT
        done = [convert(path, args.output / str(read_config(path).get("task", path.stem))) for path in files]
        if args.json:
            print_json({"group": args.dataset, "tasks": [{"folder": str(c.folder), "num_fewshot": c.num_fewshot, "warnings": c.warnings}
                                                         for c in done]})
        else:
            console().print(f"'{args.dataset}': {len(done)} tasks written under {args.output}: "
                            f"{', '.join(c.task['name'] for c in done[:8])}{' ...' if len(done) > 8 else ''}", highlight=False)
        return 0
    converted = convert(files[0], args.output)
    if args.json:
        print_json({"folder": str(converted.folder), "task": converted.task, "num_fewshot": converted.num_fewshot,
                    "warnings": converted.warnings})
        return 0
    out = console()
    out.print(f"task '{converted.task['name']}' written to {converted.folder} (task.yaml, prompts/lm_eval.jinja)", highlight=False)
    for warning in converted.warnings:
        out.print(f"  warning: {warning}", highlight=False)
    shots = f" --shots {converted.num_fewshot}" if converted.num_fewshot is not None else ""
    out.print(f"run it: harness run --task {converted.folder}{shots} (hub data: set HF_DATASETS_OFFLINE=1 to use the local cache)",
              highlight=False)
    return 0


def _fields(given: list[str]) -> dict[str, str]:
    fields = {}
    for entry in given:
        name, sep, expression = entry.partition("=")
        if not sep or not name.strip().isidentifier() or not expression.strip():
            raise HarnessError(f"--field {entry!r}: expected NAME=EXPR, e.g. --field \"text=Title ~ '. ' ~ Description\"")
        fields[name.strip()] = expression.strip()
    return fields


def _fails_on(task: Task, path: Path) -> str | None:
    """Why the template at ``path`` does not render the task's first items (with demonstrations), or None."""
    template = load_prompt(task, str(path))
    items = task.items("test")[:3]
    try:
        for item in items:
            rendered = template.render(task, item, [i for i in items if i is not item][:2])
            if task.labels and len(rendered.continuations) != len(task.labels):
                return (f"the task scores {len(rendered.continuations)} verbalizer words for its {len(task.labels)} labels, a "
                        "PromptSource template one answer per label: use a task with one verbalizer per label")
    except HarnessError as exc:
        return str(exc)
    return None
