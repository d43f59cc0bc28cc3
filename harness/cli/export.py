"""``harness export RUN --format lm-eval|mlflow|wandb``: a stored run in another tool's own format."""

from __future__ import annotations

import argparse

from harness.core.errors import HarnessError
from harness.report.lm_eval_format import export_lm_eval
from harness.report.mlflow_format import export_mlflow
from harness.report.terminal import console, print_json
from harness.report.wandb_format import export_wandb
from harness.store.store import Store


def cmd_export(args: argparse.Namespace) -> int:
    if args.output is None and not (args.format == "mlflow" and args.tracking_uri):
        raise HarnessError(f"harness export --format {args.format}: give -o/--output OUT" + (" or --tracking-uri" if args.format == "mlflow" else ""))
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise HarnessError(f"harness export --format {args.format}: -o/--output '{args.output}' is a file; it takes a folder (made if missing)")
    store = Store.open_read_only(args.db)
    try:
        run_id = store.resolve_run(args.run)
        if args.format == "mlflow":
            uri = args.tracking_uri or (args.output.resolve() / "mlruns").as_uri()
            logged = export_mlflow(store, run_id, uri, args.experiment)
        elif args.format == "wandb":
            runs = export_wandb(store, run_id, args.output, args.experiment)
        else:
            written = export_lm_eval(store, run_id, args.output)
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
    console().print(f"run {run_id}: {len(written.results)} results file(s), {len(written.samples)} samples file(s) in {args.output}",
                    highlight=False)
    return 0
