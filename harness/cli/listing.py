"""Handler of ``harness tasks`` (options: harness/cli/options/basic.py): apart from the other
verbs so that listing tasks imports neither the runner nor the statistics. A JSONL split's rows
are counted without parsing it, and what needs the rows read (a group's members, another
format's row count) is cached in the harness cache by file path, size and mtime: the listing
parsed every file of every task before (12-14 s on the benchmark data)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.files import write_atomic
from harness.core.paths import cache_dir
from harness.prompts.template import available_prompts
from harness.report.terminal import Col, console, print_json, print_table
from harness.scoring.checks import check_task
from harness.tasks.sources import FileSource, count_rows
from harness.tasks.task import Task, discover_tasks, load_task

COUNTS_FILE = "task_counts.json"
MAX_CACHED = 2000  # entries kept in the counts cache


def _cache_key(task: Task) -> str | None:
    """What a task's counts depend on: its test file (path, size, mtime) and its group expression; None if not a file."""
    source = task.split_source("test")
    if not isinstance(source, FileSource) or not source.path.is_file():
        return None
    stat = source.path.stat()
    by = task.spec.subtasks.by if task.spec.subtasks is not None else ""
    return json.dumps([str(source.path.resolve()), stat.st_size, stat.st_mtime_ns, by, task.subset])


def _counts(task: Task) -> dict[str, int]:
    """{"rows": test rows, "members": group members (groups only)}, computed without the cache."""
    counted = count_rows(task.split_source("test")) if task.subset is None else None
    counts = {"rows": len(task.items("test")) if counted is None else counted}
    if task.spec.subtasks is not None:
        counts["members"] = len(task.subtask_keys())
    return counts


class CountCache:
    """Row and member counts by test file (path, size, mtime): reading them again costs a parse of every row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.entries: dict[str, dict[str, int]] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):  # none yet, or unreadable: counted again
            self.entries = {}

    def counts(self, task: Task) -> dict[str, int]:
        key = _cache_key(task)
        if key is not None and isinstance(self.entries.get(key), dict):
            return self.entries[key]
        counts = _counts(task)
        if key is not None:
            self.entries[key] = counts
            self.changed = True
        return counts

    def save(self) -> None:
        if not self.changed:
            return
        kept = dict(list(self.entries.items())[-MAX_CACHED:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, [json.dumps(kept)])
        except (OSError, HarnessError):  # a read-only cache only costs the next listing its time
            pass


def task_counts(task: Task, cache: CountCache) -> tuple[int | str, str]:
    """The test split's rows (or 'data missing') and the task's type, ' (group of N)' added for a group."""
    try:
        counts = cache.counts(task)
    except HarnessError:
        return "data missing", task.spec.type
    members = counts.get("members")
    return counts["rows"], task.spec.type + (f" (group of {members})" if members is not None else "")


def cmd_tasks(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    cache = CountCache(cache_dir() / COUNTS_FILE)
    for name, path in sorted(discover_tasks(args.tasks_dir).items()):
        try:
            task = check_task(load_task(path, args.data_dir))
            count, kind = task_counts(task, cache)  # a group task: mmlu -> mmlu_<subject>
            rows.append({"name": name, "type": kind, "rows": count, "prompts": sorted(available_prompts(task, args.prompts_dir)),
                         "description": task.spec.description, "path": str(path)})
        except HarnessError as exc:
            rows.append({"name": name, "type": "invalid", "rows": "-", "prompts": [], "description": str(exc), "path": str(path)})
    cache.save()
    if args.json:
        print_json(rows)
        return 0
    columns = [Col("name", wrap=True), Col("type", wrap=True, drop=2), Col("rows", "right"), Col("prompt variants", wrap=True),
               Col("description", wrap=True, drop=1)]
    print_table(console(args.wide), "tasks", columns, [[r["name"], r["type"], str(r["rows"]), ", ".join(r["prompts"]), r["description"]] for r in rows])
    return 0
