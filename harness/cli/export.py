"""``harness export RUN --format lm-eval|mlflow|wandb``: a stored run in another tool's own format."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.report.lm_eval_format import export_lm_eval
from harness.report.mlflow_format import export_mlflow
from harness.report.terminal import console, print_json
from harness.report.wandb_format import export_wandb
from harness.store.store import Store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--format", choices=["lm-eval", "mlflow", "wandb"], default="lm-eval",
                   help="lm-eval: results_<date>.json and samples_<task>_<date>.jsonl per model folder, as lm-eval writes them; "
                   "mlflow: one MLflow run per cell (params, metrics, items.jsonl artifact); wandb: one W&B run per cell "
                   "(config, summary, items table; WANDB_MODE=offline writes them under OUT/wandb)")
    p.add_argument("-o", "--out", type=Path, help="output folder (lm-eval; mlflow: the default file:// store is <out>/mlruns)")
    p.add_argument("--tracking-uri", help="mlflow: where to log (default: file://<out>/mlruns)")
    p.add_argument("--experiment", default="harness", help="mlflow: the experiment's name; wandb: the project's (default: %(default)s)")


def cmd_export(args: argparse.Namespace) -> int:
    if args.out is None and not (args.format == "mlflow" and args.tracking_uri):
        raise HarnessError(f"harness export --format {args.format}: give -o OUT" + (" or --tracking-uri" if args.format == "mlflow" else ""))
    store = Store.open_read_only(args.db)
    try:
        run_id = store.resolve_run(args.run)
        if args.format == "mlflow":
            uri = args.tracking_uri or (args.out.resolve() / "mlruns").as_uri()
            logged = export_mlflow(store, run_id, uri, args.experiment)
        elif args.format == "wandb":
            runs = export_wandb(store, run_id, args.out, args.experiment)
        else:
            written = export_lm_eval(store, run_id, args.out)
    finally:
        store.close()
    if args.format == "wandb":
        if args.json:
            print_json({"run_id": run_id, "wandb_runs": runs.run_ids, "folder": str(runs.folder)})
        else:
            console().print(f"run {run_id}: {len(runs.run_ids)} W&B runs in project '{args.experiment}' ({runs.folder})", highlight=False)
        return 0
    if args.format == "mlflow":
        if args.json:
            print_json({"run_id": run_id, "tracking_uri": uri, "experiment_id": logged.experiment_id, "mlflow_runs": logged.run_ids})
        else:
            console().print(f"run {run_id}: {len(logged.run_ids)} MLflow runs in experiment '{args.experiment}' at {uri}", highlight=False)
        return 0
    if args.json:
        print_json({"run_id": run_id, "results": [str(p) for p in written.results], "samples": [str(p) for p in written.samples]})
        return 0
    console().print(f"run {run_id}: {len(written.results)} results file(s), {len(written.samples)} samples file(s) in {args.out}",
                    highlight=False)
    return 0


register_verb(Verb("export", "write a stored run in another tool's format (lm-eval results + samples)", _arguments, cmd_export, ("db",)))
