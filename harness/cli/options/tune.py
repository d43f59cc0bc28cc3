"""Options of ``tune`` (handler: harness/cli/tune.py)."""

from __future__ import annotations

import argparse

from harness.cli.verbs import FloatListFlag, ListFlag, Verb, register_verb


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", "-t", action=ListFlag, dest="tasks", required=True,
                   help="task(s) to train on, as in `run`: --task a b, --task a,b or repeated (several: a mixture)")
    p.add_argument("--prompt", "-p", action=ListFlag, dest="prompts", help="template(s) to render with (default: each task's first)")
    p.add_argument("--weight", action=FloatListFlag, dest="weights", help="sampling weight per --task, in order (default: 1 each)")
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


register_verb(Verb("tune", "fine-tune a model (LoRA by default) on tasks' train splits rendered through a template", _arguments,
                   "harness.cli.tune:cmd_tune", ("dirs",)))
