"""The ``tune`` verb: options and handler (cli.py owns the parser and only calls in here).

It prints, per task, which items select the checkpoint (a validation split, or a seeded holdout of
train that is never trained on) and, per evaluation, the mean with its n and 95% CI."""

from __future__ import annotations

import argparse
import json

from harness.backends import parse_model
from harness.core.errors import HarnessError
from harness.tune.card import CARD_JSON, CARD_MD
from harness.tune.train import TuneConfig, tune


def config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    base = parse_model(args.model)
    base = base.model_copy(update={k: v for k, v in {"dtype": args.dtype, "device": args.device}.items() if v})
    for name in ("steps", "batch_size", "grad_accum", "eval_steps", "lora_r"):
        if getattr(args, name) < 1:
            raise HarnessError(f"harness tune: --{name.replace('_', '-')} must be at least 1")
    return TuneConfig(
        tasks=tuple(args.tasks), prompts=tuple(args.prompts or ()), task_weights=tuple(args.weights or ()), base=base,
        output=args.output, full=args.full, lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=tuple(args.target_modules), learning_rate=args.lr, max_steps=args.steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, warmup_steps=args.warmup_steps, eval_steps=args.eval_steps, eval_split=args.eval_split,
        eval_limit=args.eval_limit, holdout=args.holdout, patience=args.patience, train_split=args.train_split, seed=args.seed,
        tasks_dirs=tuple(str(d) for d in args.tasks_dir), prompts_dirs=tuple(str(d) for d in args.prompts_dir),
        data_dirs=tuple(str(d) for d in args.data_dir), quiet=args.quiet or args.json,
    )


def cmd_tune(args: argparse.Namespace) -> int:
    result = tune(config_from_args(args))
    card = json.loads((result.output / CARD_JSON).read_text())
    if args.json:
        print(json.dumps(card, indent=2, ensure_ascii=False))
        return 0
    for task, sel in card["selection"].items():
        trained = card["training"][task]
        print(f"selection: {task}: {sel['how']} (trained on {trained['n']} of {trained['of']} '{trained['split']}' items)")
    for point in result.curve:
        print(f"  step {point['step']:>5}  {result.metric} {point[result.metric]:.4f}  "
              f"95% CI [{point['ci_low']:.4f}, {point['ci_high']:.4f}]  n={point['n']}")
    if result.curve and len(result.curve[-1].get("cells", [])) > 1:
        print(f"  ({result.curve[-1]['ci_method']})")
    print(f"best step {result.best_step}: {result.metric} = {result.best_metric}; saved to {result.output} "
          f"(card: {result.output / CARD_MD}) in {result.seconds:.0f}s")
    print((result.output / CARD_MD).read_text().strip().splitlines()[-1])
    return 0
