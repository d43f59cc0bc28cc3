"""Options of ``tasks``, ``validate``, ``run``, ``show`` and ``cache`` (handlers: harness/cli/basic.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options.decide import add_show_options
from harness.cli.verbs import IntListFlag, ListFlag, Verb, register_verb

WIDE = "tables: every column, even past the terminal's width (default: the key columns that fit)"


def _tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help=WIDE)


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task")
    p.add_argument("-n", type=int, default=2, help="example prompts per variant (default: %(default)s)")
    p.add_argument("--prompt", action=ListFlag, help="variants to render, e.g. --prompt a,b (default: all found)")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--selector", default="first_k")
    p.add_argument("--split", default="test")
    p.add_argument("--fewshot-split", default="fewshot")
    p.add_argument("--sample", type=int, help="render a seeded random sample of N rows instead of the first -n (as `run --sample`)")
    p.add_argument("--stratify", metavar="EXPR", help="with --sample (or -n): spread the rows over this field or expression, e.g. label")
    p.add_argument("--seed", type=int, default=1234, help="seed of --sample and of the demonstrations, as in `run` (default: %(default)s)")


def add_matrix_options(p: argparse.ArgumentParser) -> None:
    """--task/--prompt/--shots/--selector of ``run`` and ``ab``: lists as ``a b`` or ``a,b``."""
    p.add_argument("--task", "-t", action=ListFlag, dest="tasks", help="task names or folders, e.g. --task a b or --task a,b")
    p.add_argument("--prompt", "-p", action=ListFlag, dest="prompts", help="prompt variants (default: each task's own)")
    p.add_argument("--shots", "-k", action=IntListFlag, help="shot counts, e.g. --shots 0 5 or --shots 0,5")
    p.add_argument("--selector", action=ListFlag, dest="selectors", help="few-shot selectors (first_k, random, balanced, ...)")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", nargs="?", type=Path, help="experiment YAML file (flags below override its fields)")
    add_matrix_options(p)
    p.add_argument("--model", "-m", action="append", nargs="?", const="", dest="models",
                   help="BACKEND:MODEL (hf:<id-or-path>, vllm:<id-or-path>, openai:<name>, scripted:<name>); no value = the embedded Gemma 3 270M")
    p.add_argument("--adapter", help="PEFT adapter folder applied to every --model (hf: and vllm: models)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="hf: and vllm: models")
    p.add_argument("--device", help="hf: models: cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--base-url", action="append", dest="base_urls", metavar="URL",
                   help="OpenAI-compatible server for openai:MODEL (default: $OPENAI_BASE_URL, else OpenAI); "
                   "repeat it for replicas: requests are spread over them")
    p.add_argument("--concurrency", type=int, help="requests in flight per API model (openai: models; default: 4)")
    p.add_argument("--limit", type=int, help="first N items of each task")
    p.add_argument("--sample", type=int, help="a seeded random sample of N items of each task (seed: --seed; independent of row order)")
    p.add_argument("--stratify", metavar="EXPR", help="with --sample or --limit: allocate the items proportionally over this field "
                   "or expression over the row, e.g. label")
    p.add_argument("--anchors", action=ListFlag, metavar="FILE", help="anchors files (harness anchors TASK -o FILE), one per task: evaluate "
                   "only their anchor items and print each cell's estimated full-set score with its interval")
    p.add_argument("--max-tokens", type=int, help="cap on generated tokens for generate tasks (quick looks, smoke tests)")
    p.add_argument("--draws", type=int, help="independent demonstration draws per few-shot cell (report: harness draws)")
    p.add_argument("--seed", type=int)
    p.add_argument("--split")
    p.add_argument("--fewshot-split")
    p.add_argument("--new", action="store_true", help="start a new run even if an identical one is unfinished")
    race = p.add_argument_group("racing (--until-decided; docs/compare.md 'Deciding with fewer items')")
    race.add_argument("--until-decided", action="store_true", help="race each task's cells on one seeded order of its items, in rounds, "
                      "and stop evaluating a cell once another is confidently better (anytime-valid)")
    race.add_argument("--alpha", type=float, help="with --until-decided: the race's error probability (default 0.05)")
    race.add_argument("--margin", type=float, help="with --until-decided: also stop when the survivors are within ±M of each other "
                      "(metric units: 0.02 = 2 points of accuracy)")
    race.add_argument("--round", type=int, dest="race_round", metavar="N", help="with --until-decided: items per cell per round (default 50)")
    race.add_argument("--budget-items", type=int, metavar="N", help="with --until-decided: stop when every surviving cell has N items")
    race.add_argument("--budget-requests", type=int, metavar="N", help="with --until-decided: stop after the round in which a task's "
                      "requests (cache hits included) reach N")
    race.add_argument("--budget-tokens", type=int, metavar="N", help="with --until-decided: stop after the round in which a task's tokens reach N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="also show the model libraries' own output (loading bars, deprecation warnings)")
    p.add_argument("--wide", action="store_true", help=WIDE)


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?")
    add_show_options(p)


def _cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["stats", "clear"])


register_verb(Verb("tasks", "list the tasks found", _tasks_arguments, "harness.cli.listing:cmd_tasks", ("dirs",)))
register_verb(Verb("validate", "check a task and render example prompts from real rows", _validate_arguments, "harness.cli.basic:cmd_validate",
                   ("dirs",)))
register_verb(Verb("run", "evaluate a matrix of tasks x prompts x shots x selectors x models", _run_arguments, "harness.cli.basic:cmd_run",
                   ("db", "dirs")))
register_verb(Verb("show", "list stored runs, or the cells of one run; --diff A B: items where two cells disagree", _show_arguments,
                   "harness.cli.basic:cmd_show", ("db",)))
register_verb(Verb("cache", "response cache statistics (--json: as JSON), or clear it", _cache_arguments, "harness.cli.basic:cmd_cache", ("db",)))
