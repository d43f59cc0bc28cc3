"""Issue 21 item 2 acceptance, part 2 (no model): the anchor estimate against the full run on held-out prompt variants.

For each task's run (bench/anchors_acceptance.sh: 12 prompt variants, every item of a seeded sample), the 12 variants
are split into 3 folds of 4 (every third variant); for each fold the 2PL model is fitted on the other 8 variants' cells
(``fit_anchors`` with those 4 excluded, as ``harness anchors TASK --from RUN --exclude-prompt ...``), K anchors are
drawn with each of ``--seeds`` seeds, and each held-out cell's full-set estimate from its anchor items (as ``harness
anchors estimate``) is compared with its own mean over every item. Printed per task and K: held-out estimates, mean
absolute error, RMSE (also of the IRT-only and the anchors' stratified mean), the intervals' coverage and width.

    python bench/anchors_acceptance.py                          # results/anchors_acceptance/runs.db, K = 30 and 60, 20 seeds
    python bench/anchors_acceptance.py --k 20 50 --seeds 10 --json out.json
    python bench/anchors_acceptance.py --run RUN --k 20                 # a run still going: its complete cells
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from harness.analysis.anchors import CellEstimate, estimate_cells, fit_anchors
from harness.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/anchors_acceptance/runs.db"))
    parser.add_argument("--k", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every held-out estimate here")
    parser.add_argument("--run", nargs="+", help="only these runs (default: every finished run); an unfinished run's complete cells are used")
    args = parser.parse_args()
    store = Store.open_read_only(args.db)
    started = time.time()
    out: list[dict[str, object]] = []
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'task':<10} {'K':>3} {'of':>4} {'held-out':>8} {'MAE':>5} {'RMSE':>5} {'IRT only':>8} {'strat.':>6} {'coverage':>8} {'width':>5}")
    for run in [r for r in store.runs() if (r.id in args.run if args.run else r.status == "finished")]:
        cells = [c for c in store.cells([run.id]) if len(store.done_item_ids(run.id, c.cell_id)) >= c.n_planned]  # complete cells only
        tasks = sorted({c.task.split("_")[0] if c.task.startswith("mmlu_") else c.task for c in cells})
        for task in tasks:
            prompts = sorted({c.prompt for c in cells if c.task == task or c.task.startswith(f"{task}_")})
            for k in args.k:
                rows: list[tuple[int, int, CellEstimate]] = []
                n_items = 0
                for fold in range(args.folds):
                    held = prompts[fold::args.folds]
                    train = [p for p in prompts if p not in held]
                    for seed in range(args.seeds):
                        anchors = fit_anchors(store, [run.id], task, k, seed=seed, prompts=train)
                        n_items = len(anchors.items)
                        rows += [(fold, seed, r) for r in estimate_cells(store, [run.id], anchors, prompts=held)]
                err = np.array([r.estimate - (r.full or 0.0) for _, _, r in rows])
                irt = np.array([r.irt - (r.full or 0.0) for _, _, r in rows])
                strat = np.array([r.stratified - (r.full or 0.0) for _, _, r in rows])
                covered = np.mean([bool(r.covered) for _, _, r in rows])
                width = np.mean([r.high - r.low for _, _, r in rows])
                print(f"{task:<10} {k:>3} {n_items:>4} {len(rows):>8} {100 * np.mean(np.abs(err)):5.1f} {100 * math.sqrt(np.mean(err**2)):5.1f} "
                      f"{100 * math.sqrt(np.mean(irt**2)):8.1f} {100 * math.sqrt(np.mean(strat**2)):6.1f} {covered:8.3f} {100 * width:5.1f}")
                out += [{"task": task, "k": k, "items": n_items, "fold": fold, "seed": seed, "cell": r.respondent, "estimate": r.estimate,
                         "low": r.low, "high": r.high, "irt": r.irt, "stratified": r.stratified, "full": r.full} for fold, seed, r in rows]
    print(f"({time.time() - started:.0f} s; load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
