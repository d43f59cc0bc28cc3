"""A stored run as Weights & Biases runs: one W&B run per harness cell (config: the cell; summary:
its metrics with lm-eval's definitions; an ``items`` table of its stored items), grouped under the
harness run id, so a team's W&B project shows prompt variants and checkpoints side by side.

``WANDB_MODE`` decides where it goes, as for any W&B script: ``offline`` writes the runs under
``<out>/wandb/`` for a later ``wandb sync``; online needs ``WANDB_API_KEY`` (a missing key is a
clear error, never a login prompt). These are point values: verdicts and CIs are ``harness
compare``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.core.deps import require
from harness.core.errors import HarnessError
from harness.report.lm_eval_format import metric_values
from harness.store import Store

ITEM_COLUMNS: list[str | int] = ["item_id", "position", "prompt", "extracted", "target", "scores", "demo_ids"]


@dataclass(frozen=True)
class Logged:
    run_ids: list[str]
    folder: Path


def export_wandb(store: Store, run_id: str, out: Path, project: str = "harness") -> Logged:
    require("wandb", "wandb", what="harness export --format wandb")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    out.mkdir(parents=True, exist_ok=True)
    logged = []
    for cell in store.cells([run_id]):
        items = store.items([run_id], cell.cell_id)
        config = {"task": cell.task, "prompt": cell.prompt, "shots": cell.shots, "selector": cell.selector, "model": cell.model,
                  "harness_run": run_id, "cell_id": cell.cell_id, "prompt_sha256": cell.prompt_sha256, "n_items": len(items)}
        try:
            run = wandb.init(project=project, name=f"{cell.task} · {cell.prompt} · {cell.shots}-shot · {cell.selector} · {cell.model}",
                             group=run_id, config=config, dir=str(out), reinit="create_new")
        except (wandb.errors.UsageError, wandb.errors.AuthenticationError) as exc:
            raise HarnessError(f"W&B refused the run ({exc}); set WANDB_API_KEY, or WANDB_MODE=offline to write it under {out}/wandb "
                               "for a later `wandb sync`") from None
        table = wandb.Table(columns=ITEM_COLUMNS)
        for item in items:
            prompt = item.prompt if isinstance(item.prompt, str) else str(item.prompt)
            table.add_data(item.item_id, item.position, prompt, item.extracted, str(item.target), dict(item.scores), list(item.demo_ids))
        run.log({"items": table})
        for key, value in metric_values(store, cell, items).items():
            if isinstance(value, float):
                run.summary[key.removesuffix(",none")] = value
        logged.append(run.id)
        run.finish()
    return Logged(logged, out / "wandb")
