"""Options of ``export`` (handler: harness/cli/export.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, output_option, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--format", choices=["lm-eval", "mlflow", "wandb"], default="lm-eval",
                   help="lm-eval: results_<date>.json and samples_<task>_<date>.jsonl per model folder, as lm-eval writes them; "
                   "mlflow: one MLflow run per cell (params, metrics, items.jsonl artifact); wandb: one W&B run per cell "
                   "(config, summary, items table; WANDB_MODE=offline writes them under OUT/wandb)")
    output_option(p, "output folder (lm-eval; mlflow: the default file:// store is <output>/mlruns)", type=Path, metavar="OUT")
    p.add_argument("--tracking-uri", help="mlflow: where to log (default: file://<out>/mlruns)")
    p.add_argument("--experiment", default="harness", help="mlflow: the experiment's name; wandb: the project's (default: %(default)s)")


register_verb(Verb("export", "write a stored run in another tool's format (lm-eval results + samples)", _arguments, "harness.cli.export:cmd_export",
                   ("db",)))
