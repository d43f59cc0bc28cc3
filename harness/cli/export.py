"""``harness export RUN --format lm-eval -o DIR``: a stored run in another tool's own format."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.verbs import Verb, register_verb
from harness.report.lm_eval_format import export_lm_eval
from harness.report.terminal import console, print_json
from harness.store.store import Store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="latest", help="run id or prefix (default: latest)")
    p.add_argument("--format", choices=["lm-eval"], default="lm-eval",
                   help="lm-eval: results_<date>.json and samples_<task>_<date>.jsonl per model folder, as lm-eval writes them")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")


def cmd_export(args: argparse.Namespace) -> int:
    store = Store(args.db)
    try:
        run_id = store.resolve_run(args.run)
        written = export_lm_eval(store, run_id, args.out)
    finally:
        store.close()
    if args.json:
        print_json({"run_id": run_id, "results": [str(p) for p in written.results], "samples": [str(p) for p in written.samples]})
        return 0
    console().print(f"run {run_id}: {len(written.results)} results file(s), {len(written.samples)} samples file(s) in {args.out}",
                    highlight=False)
    return 0


register_verb(Verb("export", "write a stored run in another tool's format (lm-eval results + samples)", _arguments, cmd_export, ("db",)))
