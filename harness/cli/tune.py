"""The ``tune`` verb: options and handler (cli.py owns the parser and only calls in here).

It prints, per task, which items select the checkpoint (a validation split, or a seeded holdout of
train that is never trained on) and, per evaluation, the mean with its n and 95% CI."""

from __future__ import annotations

import argparse
import json

from harness.backends import parse_model
from harness.cli.verbs import Verb, register_verb
from harness.core.errors import HarnessError
from harness.tune.card import CARD_JSON, CARD_MD
from harness.tune.train import TuneConfig, tune


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", "-t", action="append", dest="tasks", required=True, help="task to train on (repeat for a mixture)")
    p.add_argument("--prompt", "-p", action="append", dest="prompts", help="template(s) to render with (repeat; default: each task's first)")
    p.add_argument("--weight", action="append", type=float, dest="weights", help="sampling weight per --task, in order (default: 1 each)")
    p.add_argument("--model", "-m", default="", help="base model BACKEND:MODEL (default: the embedded Gemma 3 270M)")
    p.add_argument("-o", "--output", required=True, help="new folder for the adapter (or full model) and its card")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (writes a whole model)")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--target-modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"], help="LoRA target module names")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--steps", type=int, default=100, help="maximum optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--eval-steps", type=int, default=20, help="evaluate the selection items every N steps (default: %(default)s)")
    p.add_argument("--eval-split", default="auto",
                   help="selection split (early stopping, best checkpoint): 'auto' = the task's validation split, else a holdout of "
                        "train that is not trained on; 'holdout' = always a train holdout; or a split name. Never 'test' "
                        "(default: %(default)s)")
    p.add_argument("--eval-limit", type=int, default=50,
                   help="selection items per task taken from a split; also caps the default holdout (default: %(default)s)")
    p.add_argument("--holdout", type=float, metavar="N",
                   help="train items held out for selection when there is no validation split: N items, or a fraction if below 1 "
                        "(default: min(--eval-limit, 20%% of train), at least 5)")
    p.add_argument("--patience", type=int, default=3, help="evaluations without improvement before stopping; 0 = never (default: %(default)s)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the card as JSON at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


register_verb(Verb("tune", "fine-tune a model (LoRA by default) on tasks' train splits rendered through a template", _arguments, cmd_tune, ("dirs",)))
