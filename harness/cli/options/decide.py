"""Options of ``compare``, ``ab``, ``rescore``, ``report`` and ``show --diff`` (handlers: harness/cli/decide.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.cli.verbs import DEFAULT_DB, IntListFlag, ListFlag, Verb, register_verb

# harness.stats.basics.DEFAULT_RESAMPLES, spelt here so the parser does not import numpy and scipy (tests/cli/test_startup.py checks they agree)
DEFAULT_RESAMPLES = 2000
WIDE = "tables: every column, even past the terminal's width (default: the key columns that fit)"


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
    costs = p.add_argument_group("costs (the cost ledger; docs/compare.md 'Ranking under a budget')")
    costs.add_argument("--budget", type=float, metavar="MONEY", help="mark the cells whose cost exceeds MONEY (in the runs' 'prices:' "
                       "currency) and name the best cell within it; cells of unpriced models are 'unknown'")
    costs.add_argument("--budget-tokens", type=int, metavar="N", help="the same with a budget of N tokens (input + output)")
    costs.add_argument("--budget-scope", choices=["compared", "split"], default="compared",
                       help="a cell's cost: of the items compared (counted, default) or of the task's whole split (extrapolated "
                            "from its stored items: an estimate)")
    costs.add_argument("--costs", action="store_true", help="also print each cell's ledger: requests, sent, from cache, tokens, money")


def add_compare_options(p: argparse.ArgumentParser) -> None:
    """The options of ``compare`` after --db, --json, runs and --metric."""
    p.add_argument("--csv", action="store_true", help="print the ranked cells as CSV")
    p.add_argument("--full", action="store_true", help="with --json: an object with cells, the possibly-best sets with every "
                   "pair's adjusted p, spread, rank stability and warnings")
    p.add_argument("--task", action=ListFlag, dest="only_tasks", help="only these tasks (a b, or a,b)")
    p.add_argument("--pairs", action="store_true", help="also print every pair of cells with its adjusted p-value")
    p.add_argument("--wide", action="store_true", help=WIDE)
    _verdict_options(p)


def add_show_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="cells (id, prefix or RUN:CELL): items where they disagree")
    p.add_argument("--metric", help="metric for --diff (default: A's first)")
    p.add_argument("--limit", type=int, default=20, help="--diff: items shown (default: %(default)s)")
    p.add_argument("--costs", action="store_true", help="with RUN: each cell's cost ledger (requests, sent, from cache, tokens in/out, "
                   "money when priced) instead of the cell list")


def _ab_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="base model BACKEND:MODEL (default: the embedded Gemma 3 270M)")
    p.add_argument("--tuned", help="tuned checkpoint BACKEND:MODEL")
    p.add_argument("--adapter", help="PEFT/LoRA adapter folder applied to the base (the tuned model)")
    p.add_argument("--task", "-t", action=ListFlag, dest="tasks", help="task names or folders, e.g. --task a b or --task a,b")
    p.add_argument("--prompt", "-p", action=ListFlag, dest="prompts")
    p.add_argument("--shots", "-k", action=IntListFlag)
    p.add_argument("--selector", action=ListFlag, dest="selectors")
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
    p.add_argument("--wide", action="store_true", help=WIDE)
    _stat_options(p)


def _rescore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest")
    p.add_argument("--metric", action=ListFlag, default=[], help="metrics to add, a b or a,b (the run's own are always recomputed)")
    p.add_argument("--dry-run", action="store_true", help="check only; do not write the new scores")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=Path(os.environ.get("HARNESS_DB", DEFAULT_DB)), help="SQLite results file")
    p.add_argument("runs", nargs="*", help="runs to compare (default: latest; none when only --tune is given)")
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="the HTML file to write (default: %(default)s)")
    p.add_argument("--task", action=ListFlag, dest="only_tasks")
    p.add_argument("--diff-limit", type=int, default=30, help="disagreeing items listed per task (default: %(default)s)")
    p.add_argument("--ab", nargs=2, metavar=("BASE_RUN", "TUNED_RUN"),
                   help="the A/B page of two runs (as `harness ab --base-run --tuned-run` prints it) instead of the run page")
    p.add_argument("--tune", nargs="+", type=Path, default=[], metavar="OUT",
                   help="`harness tune` output folder(s): their training/eval curves (alone, or appended to the named runs)")
    _stat_options(p)


register_verb(Verb("compare", "rank the cells of stored runs with 95%% CIs", _compare_arguments, "harness.cli.decide:cmd_compare", ("db",)))
register_verb(Verb("ab", "A/B a tuned model (checkpoint or --adapter) against its base on identical prompts and items", _ab_arguments,
                   "harness.cli.decide:cmd_ab", ("db", "dirs")))
register_verb(Verb("rescore", "recompute a run's scores from stored responses (no model), optionally adding metrics", _rescore_arguments,
                   "harness.cli.decide:cmd_rescore", ("db", "dirs")))
register_verb(Verb("report", "write harness view's run page (or A/B page) as one self-contained HTML file", _report_arguments,
                   "harness.cli.decide:cmd_report"))
