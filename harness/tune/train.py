"""Instruction tuning: a task's train split rendered through a prompt template -> a tuned adapter.

Why it looks like this:
- Training examples are tokenised by the HF backend's own ``_encode_pair`` (prompt, target
  continuation), so the model is trained on exactly the token split it is later scored on;
  labels are -100 on the prompt, so the loss is on the target tokens only.
- Selection (early stopping, best checkpoint) is on items that are never trained on and are
  not the split ``harness ab`` scores: the task's ``validation`` split when it has one, else a
  seeded holdout of its train split (``--holdout``), never ``test``. The card records which
  split, how it was made and the ids and content hashes of the training and selection items,
  so ``harness.tune.overlap`` can later find overlap with what is scored.
- The selection evaluation every N steps runs harness's own cells (prompts, requests, metrics:
  ``runner.run_model``) on exactly the selection items, with the in-training model as a ready
  backend, in a scratch store; each point records n and a 95% CI (Wilson for 0/1 metrics; an
  item bootstrap for the mean over several tasks x templates). Its mean drives early stopping
  and best-checkpoint selection in the Trainer.
- Mixtures: every (task, template) pair is a source; examples are drawn from sources by
  weight with a seeded RNG, so the same inputs and seed give the same training stream.
- Every bad input (no train split, an empty target, an unknown LoRA target module) is a
  HarnessError raised before the first optimiser step.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.compare import summarize
from harness.backends import ModelSpec
from harness.backends.hf.backend import HFBackend, resolve_device, resolve_dtype
from harness.backends.hf.options import hf_options
from harness.core.deps import require, require_transformers
from harness.core.errors import HarnessError
from harness.prompts.template import PromptTemplate, load_prompt
from harness.requests import LoglikelihoodRequest
from harness.runner.execute import RunSummary, run_model
from harness.runner.planning import Cell, prepare
from harness.runner.provenance import versions
from harness.scoring import get_metric
from harness.scoring.checks import check_task
from harness.stats.basics import DEFAULT_RESAMPLES
from harness.store.store import Store
from harness.tasks.task import Item, Task, find_task
from harness.tune.card import CARD_JSON, CARD_MD

AUTO, HOLDOUT = "auto", "holdout"  # --eval-split: validation if the task has it, else a train holdout / always a train holdout
HOLDOUT_FRACTION = 0.2  # default holdout: min(--eval-limit, 20% of train), at least MIN_HOLDOUT items
MIN_HOLDOUT = 5
MIN_TRAIN_LEFT = 5  # a train split must keep at least this many items after the holdout
CONTENT_HASH = "first 16 hex digits of sha256 over the JSON {input, choices} of the item (not its id or target)"


@dataclass(frozen=True)
class TuneConfig:
    """Everything that shapes a tuning run; recorded verbatim in the card."""

    tasks: tuple[str, ...]
    prompts: tuple[str, ...] = ()  # default: each task's first prompt
    task_weights: tuple[float, ...] = ()  # one per task; default all 1
    base: ModelSpec = field(default_factory=ModelSpec)
    output: str = "tuned"
    full: bool = False  # full fine-tuning instead of LoRA
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 2e-4
    max_steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 0
    eval_steps: int = 20
    eval_split: str = AUTO  # auto: 'validation' when the task has it, else a holdout of train; 'holdout'; or a split name (never 'test')
    eval_limit: int | None = 50  # selection items per task from a split; also caps the default holdout
    holdout: float | None = None  # train items held out for selection: N items (>= 1) or a fraction (< 1); default see holdout_size
    patience: int = 3  # evaluations without improvement before stopping; 0 = never stop early
    train_split: str = "train"
    seed: int = 1234
    tasks_dirs: tuple[str, ...] = ()
    prompts_dirs: tuple[str, ...] = ()
    data_dirs: tuple[str, ...] = ()
    quiet: bool = False

    def card(self) -> dict[str, Any]:
        d = asdict(self)
        d["base"] = {"label": self.base.label, **self.base.model_dump(mode="json", include={"backend", "model", "revision", "dtype", "device"})}
        d.pop("quiet")
        return d


def content_hash(item: Item) -> str:
    """What makes two items the same question whatever their ids (see CONTENT_HASH)."""
    payload = {"input": item.input, "choices": None if item.choices is None else list(item.choices)}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Selection:
    """One task's selection items (early stopping, best checkpoint) and the train items left to train on."""

    task: str
    split: str  # what the card calls it: 'validation' (a split of the task) or 'train holdout'
    source_split: str  # the split the selection items are read from
    how: str  # e.g. "train holdout: 8 of 40 items, seed 1234"
    items: tuple[Item, ...]
    of: int  # items in source_split
    train: tuple[Item, ...]  # what is trained on
    train_total: int
    excluded: tuple[str, ...] = ()  # train ids left out of training because they are (or duplicate) selection items

    def record(self) -> dict[str, Any]:
        return {"split": self.split, "source_split": self.source_split, "how": self.how, "n": len(self.items), "of": self.of,
                "item_ids": [i.id for i in self.items], "content_sha256": [content_hash(i) for i in self.items]}

    def training_record(self, split: str) -> dict[str, Any]:
        return {"split": split, "n": len(self.train), "of": self.train_total, "excluded": list(self.excluded),
                "item_ids": [i.id for i in self.train], "content_sha256": [content_hash(i) for i in self.train]}


@dataclass(frozen=True)
class Source:
    """One (task, template) pair of the mixture with its sampling weight; ``items`` are the ones trained on."""

    task: Task
    template: PromptTemplate
    weight: float
    items: tuple[Item, ...]
    selection: Selection


@dataclass(frozen=True)
class Example:
    prompt: Any  # str, or chat messages
    target: str
    source: str
    item_id: str
    stop: bool = False  # append EOS (generate tasks)


@dataclass
class TuneResult:
    output: Path
    best_step: int | None
    best_metric: float | None
    metric: str
    curve: list[dict[str, Any]]
    steps: int
    seconds: float
    device: str = "cpu"
    precision: str = "float32"  # weights dtype, plus the autocast Trainer used on CUDA
    selections: dict[str, Selection] = field(default_factory=dict)  # task -> selection items and what was trained on


# -- inputs ---------------------------------------------------------------------
def sources(config: TuneConfig) -> list[Source]:
    """Resolve tasks, templates and weights; a task without a train split is an error."""
    if not config.tasks:
        raise HarnessError("harness tune: name at least one task (--task NAME)")
    weights = list(config.task_weights) or [1.0] * len(config.tasks)
    if len(weights) != len(config.tasks) or any(w <= 0 for w in weights):
        raise HarnessError(f"harness tune: give one positive weight per task ({len(config.tasks)} task(s), got {list(config.task_weights)})")
    out: list[Source] = []
    for name, weight in zip(config.tasks, weights):
        task = check_task(find_task(name, [Path(d) for d in config.tasks_dirs], [Path(d) for d in config.data_dirs]))
        if task.spec.subtasks is not None:
            raise HarnessError(f"harness tune: task '{task.name}' is a group; name its members instead")
        if not task.has_split(config.train_split):
            have = ", ".join(sorted(task.spec.data.model_dump(exclude_none=True))) or "none"
            raise HarnessError(
                f"harness tune: task '{task.name}' has no '{config.train_split}' split to train on (its splits: {have}). "
                f"Add `{config.train_split}: FILE.jsonl` under `data:` in {task.yaml_path}."
            )
        items = tuple(task.items(config.train_split))
        if not items:
            raise HarnessError(f"harness tune: task '{task.name}': split '{config.train_split}' has no rows")
        chosen = selection(task, items, config)
        names = list(config.prompts) or task.spec.prompts[:1]
        templates = [load_prompt(task, p, [Path(d) for d in config.prompts_dirs]) for p in names]
        out.extend(Source(task, t, weight / len(templates), chosen.train, chosen) for t in templates)
    return out


def holdout_size(n_train: int, holdout: float | None, eval_limit: int | None) -> int:
    """Train items held out for selection: ``holdout`` items (>= 1) or that fraction (< 1) of the
    train split; by default min(eval_limit, 20% of train) but at least MIN_HOLDOUT."""
    if holdout is None:
        size = max(MIN_HOLDOUT, round(HOLDOUT_FRACTION * n_train))
        return min(size, eval_limit) if eval_limit else size
    if holdout >= 1:
        if holdout != int(holdout):
            raise HarnessError(f"harness tune: --holdout {holdout:g}: give a whole number of items or a fraction below 1")
        return int(holdout)
    if holdout <= 0:
        raise HarnessError(f"harness tune: --holdout {holdout:g} must be positive (items, or a fraction below 1)")
    return max(1, round(holdout * n_train))


def selection(task: Task, train: tuple[Item, ...], config: TuneConfig) -> Selection:
    """The items that choose the checkpoint for ``task`` and what is left to train on.

    ``auto``: the task's validation split (first ``eval_limit`` items) when it has one, else a
    holdout of train seeded by (seed, task). A named split is used as is; ``test`` is refused
    (it is what ``harness ab`` scores). Train items with the id or content of a selection item
    are never trained on."""
    name = config.eval_split
    if name == "test":
        raise HarnessError(
            f"harness tune: --eval-split test would choose the checkpoint on the items `harness ab` scores (its default split is 'test'), "
            f"so the A/B would be optimistic. Use a validation split (`validation: FILE.jsonl` under `data:` in {task.yaml_path}) "
            "or a holdout of the train split (--eval-split auto or holdout, --holdout N)."
        )
    if name not in (AUTO, HOLDOUT, config.train_split) and not task.has_split(name):
        have = ", ".join(sorted(task.spec.data.model_dump(exclude_none=True)))
        raise HarnessError(f"harness tune: task '{task.name}' has no '{name}' split to select on (its splits: {have}); "
                           "use --eval-split auto (validation if present, else a train holdout)")
    split = "validation" if name == AUTO else name
    if name not in (HOLDOUT, config.train_split) and task.has_split(split):
        source = task.items(split)
        items = tuple(source[: config.eval_limit])
        if not items:
            raise HarnessError(f"harness tune: task '{task.name}': split '{split}' has no rows to select on")
        how = f"{split} split: " + (f"first {len(items)} of {len(source)} items" if len(items) < len(source) else f"all {len(items)} items")
        kept, excluded = _without(train, items)
        if excluded:
            how += f"; {len(excluded)} {config.train_split} item(s) with the id or content of a selection item left out of training"
        if not kept:
            raise HarnessError(f"harness tune: task '{task.name}': every '{config.train_split}' item is also a '{split}' selection item; "
                               "nothing is left to train on. Give the task a validation split disjoint from train.")
        return Selection(task.name, split, split, how, items, len(source), kept, len(train), excluded)
    size = holdout_size(len(train), config.holdout, config.eval_limit)
    if len(train) - size < MIN_TRAIN_LEFT:
        raise HarnessError(
            f"harness tune: task '{task.name}' has no validation split and its '{config.train_split}' split has {len(train)} items, "
            f"too few to hold out {size} for checkpoint selection and keep at least {MIN_TRAIN_LEFT} to train on. Add a validation "
            f"split (`validation: FILE.jsonl` under `data:` in {task.yaml_path}), or pass a smaller --holdout N."
        )
    rng = random.Random(f"harness-tune-holdout|{config.seed}|{task.name}")
    chosen = set(rng.sample(range(len(train)), size))
    items = tuple(item for index, item in enumerate(train) if index in chosen)
    rest = tuple(item for index, item in enumerate(train) if index not in chosen)
    kept, excluded = _without(rest, items)
    how = f"{config.train_split} holdout: {size} of {len(train)} items, seed {config.seed}"
    if excluded:
        how += f"; {len(excluded)} more with the content of a held-out item left out of training"
    return Selection(task.name, f"{config.train_split} holdout", config.train_split, how, items, len(train), kept, len(train), excluded)


def _without(train: tuple[Item, ...], selected: tuple[Item, ...]) -> tuple[tuple[Item, ...], tuple[str, ...]]:
    """``train`` minus the items sharing an id or a content hash with ``selected``, and the ids left out."""
    ids, hashes = {i.id for i in selected}, {content_hash(i) for i in selected}
    out = tuple(i.id for i in train if i.id in ids or content_hash(i) in hashes)
    gone = set(out)
    return tuple(i for i in train if i.id not in gone), out


def selections(srcs: list[Source]) -> dict[str, Selection]:
    """Task name -> its selection (every source of a task shares one)."""
    return {s.task.name: s.selection for s in srcs}


def target_text(task: Task, template: PromptTemplate, item: Item) -> Example:
    """The prompt and the text the model should produce for one training item."""
    rendered = template.render(task, item, [])
    where = f"task '{task.name}', template '{template.name}', item '{item.id}'"
    if task.kind.has_choices:  # the gold choice's continuation; otherwise the first reference
        assert isinstance(item.target, int)
        index = item.target  # with several correct choices, the first (``Item.correct``): one target text to train on
        if item.verbalizers is not None:  # the first word of the gold label
            index = sum(len(words) for words in item.verbalizers[: item.target])
        target = rendered.continuations[index]
    else:
        assert not isinstance(item.target, int)  # a generate item's target is its references
        target = item.target[0] if item.target else ""
        prompt = rendered.prompt
        if isinstance(prompt, str) and target and not prompt[-1:].isspace() and not target[:1].isspace():
            target = " " + target
    if not target.strip():
        raise HarnessError(f"harness tune: {where} has an empty target; the template's answer (or the item's reference) must be non-empty text")
    return Example(rendered.prompt, target, f"{task.name}/{template.name}", item.id, task.kind.scoring == "generation")


def mixture(srcs: list[Source], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn from the sources by weight; each source cycles through a seeded shuffle."""
    rng = random.Random(seed)
    orders = [rng.sample(range(len(s.items)), len(s.items)) for s in srcs]
    cursor = [0] * len(srcs)
    rendered: dict[tuple[int, int], Example] = {}
    out: list[Example] = []
    for _ in range(n):
        k = rng.choices(range(len(srcs)), weights=[s.weight for s in srcs])[0]
        index = orders[k][cursor[k] % len(orders[k])]
        cursor[k] += 1
        if (k, index) not in rendered:
            rendered[(k, index)] = target_text(srcs[k].task, srcs[k].template, srcs[k].items[index])
        out.append(rendered[(k, index)])
    return out


def check_examples(srcs: list[Source]) -> int:
    """Render every training item once (fail fast on empty targets); returns the count."""
    return sum(1 for s in srcs for item in s.items if target_text(s.task, s.template, item) is not None)


def check_target_modules(model: Any, wanted: tuple[str, ...]) -> None:
    """Every LoRA target must name a module of the model, else peft fails mid-way (or matches nothing)."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
    unknown = [m for m in wanted if m not in present]
    if unknown:
        linear = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if type(mod).__name__ == "Linear"})
        raise HarnessError(
            f"harness tune: unknown LoRA target module(s) {', '.join(unknown)} for this model; its linear layers are: {', '.join(linear)}"
        )


@dataclass(frozen=True)
class Precision:
    """Trainer's mixed-precision switches for a run (``TrainingArguments(bf16=..., fp16=...)``)."""

    bf16: bool = False
    fp16: bool = False


def mixed_precision(device: str, weights: str, full: bool, bf16_supported: bool) -> Precision:
    """Autocast on CUDA, none on CPU. Why per case:
    - LoRA on bfloat16 weights (the GPU default): bf16 autocast; peft keeps the adapter in float32.
    - LoRA on float16 weights (``--dtype float16``): fp16 autocast with a grad scaler, which works
      because the trainable adapter weights are float32.
    - float32 weights (``--full``, or a GPU without bfloat16): bf16 autocast where the GPU has it,
      else fp16 AMP; the optimiser keeps float32 master weights either way.
    - ``--full`` on float16 weights: every trainable weight would be float16 and the grad scaler
      refuses to unscale float16 gradients, so it is an error before training.
    """
    if not device.startswith("cuda"):
        return Precision()
    if weights == "float16":
        if full:
            raise HarnessError("harness tune: --full with --dtype float16 cannot train (float16 master weights); "
                               "use --dtype float32 (mixed precision is automatic on CUDA) or bfloat16")
        return Precision(fp16=True)
    if weights == "bfloat16":
        return Precision(bf16=True)
    return Precision(bf16=True) if bf16_supported else Precision(fp16=True)


# -- training -------------------------------------------------------------------
def _tokenize(backend: Any, examples: list[Example]) -> list[dict[str, list[int]]]:
    eos = backend.tokenizer.eos_token_id
    out = []
    cache: dict[int, dict[str, list[int]]] = {}
    for ex in examples:
        key = id(ex)
        if key not in cache:
            context, target = backend._encode_pair(LoglikelihoodRequest(context=ex.prompt, continuation=ex.target))
            if ex.stop and eos is not None:  # generate tasks: learn to stop after the answer
                target = target + [eos]
            ids = context + target
            labels = [-100] * len(context) + target
            if len(ids) > backend.max_length:
                ids, labels = ids[-backend.max_length :], labels[-backend.max_length :]
            cache[key] = {"input_ids": ids, "labels": labels}
        out.append(cache[key])
    return out


def _collate(pad_id: int, trim: bool = True) -> Any:
    """Left-padded batches with explicit position ids, so every answer ends at the last positions
    and ``logits_to_keep`` computes the LM head only over them (with a 262k vocabulary the head
    over every position would dominate the step); labels are trimmed to the same window."""
    import torch

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        pad = [width - len(r["input_ids"]) for r in rows]
        ids = [[pad_id] * n + r["input_ids"] for n, r in zip(pad, rows)]
        labels = torch.tensor([[-100] * n + r["labels"] for n, r in zip(pad, rows)])
        mask = torch.tensor([[0] * n + [1] * len(r["input_ids"]) for n, r in zip(pad, rows)])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        batch = {"input_ids": torch.tensor(ids), "attention_mask": mask, "position_ids": positions}
        if trim:  # the window starts one position before the earliest answer token (it predicts that token)
            answer = (labels != -100).int().argmax(dim=1)
            keep = int(width - answer.min().item() + 1)
            if keep < width:
                batch["logits_to_keep"] = keep  # type: ignore[assignment]  # an int argument, not a tensor
                labels = labels[:, -keep:]
        batch["labels"] = labels
        return batch

    return collate


def _eval_cells(config: TuneConfig, srcs: list[Source], model: ModelSpec) -> list[Any]:
    """One zero-shot cell per (task, template) on exactly the task's selection items; each renders (fail fast)."""
    cells = [Cell(s.task, s.template, 0, "none", model, config.seed, s.selection.items, ()) for s in srcs]
    for cell in cells:
        prepare(cell, 0, cell.items[0], None)
    return cells


def eval_metric(srcs: list[Source]) -> str:
    """Each task's main metric; their mean (over tasks x templates) drives early stopping."""
    names = {s.task.spec.metrics[0] for s in srcs}
    return names.pop() if len(names) == 1 else "main_metric"


def curve_point(summaries: list[Any], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """One evaluation: the mean over its cells (tasks x templates) of each cell's main metric, the
    number of items n and a 95% CI, with how the interval was formed.

    One cell: the cell's own interval (``harness.stats.basics.mean_interval``: Wilson for 0/1 metrics,
    bootstrap otherwise; corpus metrics their corpus interval). Several cells: the mean of the
    cell means, its CI an item bootstrap in which each task's items are resampled once and
    shared by all its templates (a template's cells see the same items, so they are not
    independent); with a corpus metric among them, the cells' intervals combined as
    independent (normal approximation)."""
    import numpy as np

    cells = [{"task": s.cell.task, "prompt": s.cell.prompt, "n": s.n, "mean": s.interval.mean, "ci_low": s.interval.low,
              "ci_high": s.interval.high} for s in summaries]
    if not summaries:
        return {"mean": float("nan"), "n": 0, "ci_low": float("nan"), "ci_high": float("nan"), "ci_method": "no items", "cells": []}
    if len(summaries) == 1:
        (s,) = summaries
        return {"mean": s.interval.mean, "n": s.n, "ci_low": s.interval.low, "ci_high": s.interval.high,
                "ci_method": s.interval.method, "cells": cells}
    k = len(summaries)
    mean = float(np.mean([s.interval.mean for s in summaries]))
    by_task: dict[str, list[Any]] = {}
    for s in summaries:
        by_task.setdefault(s.cell.task, []).append(s)
    n = sum(len({i for s in group for i, v in s.scores.items() if v == v}) for group in by_task.values())
    if any(get_metric(s.metric, "metric").corpus is not None for s in summaries):
        half = math.sqrt(sum(((s.interval.high - s.interval.low) / 2) ** 2 for s in summaries)) / k
        method = f"mean of {k} cells (tasks x templates); 95% CI from the cells' own intervals treated as independent (normal approximation)"
        return {"mean": mean, "n": n, "ci_low": mean - half, "ci_high": mean + half, "ci_method": method, "cells": cells}
    rng = np.random.default_rng(seed)
    columns = []
    for group in by_task.values():
        ids = sorted({i for s in group for i in s.scores})
        matrix = np.array([[s.scores.get(i, float("nan")) for s in group] for i in ids], dtype=np.float64)
        draws = matrix[rng.integers(0, len(ids), size=(resamples, len(ids)))]  # resamples x items x templates
        with np.errstate(all="ignore"):
            columns.append(np.nanmean(draws, axis=1))
    stats = np.concatenate(columns, axis=1).mean(axis=1)
    low, high = np.nanpercentile(stats, [2.5, 97.5])
    method = (f"mean of {k} cells ({len(by_task)} task(s) x templates); 95% CI: item bootstrap, each task's items resampled and "
              f"shared by its templates ({resamples} resamples)")
    return {"mean": mean, "n": n, "ci_low": float(low), "ci_high": float(high), "ci_method": method, "cells": cells}


def _evaluator(config: TuneConfig, srcs: list[Source], backend: Any, workdir: Path) -> Any:
    """A function(step) -> curve point (mean, n, CI) of the selection items, scored by harness's own cells."""
    store = Store(workdir / "eval.sqlite")
    label = f"tuning-{uuid.uuid4().hex[:8]}"
    model = ModelSpec(name=label, model=config.base.model)
    cells = _eval_cells(config, srcs, model)
    snapshot = {"spec": {"tasks": sorted({s.task.name for s in srcs}), "models": [model.model_dump(mode="json")]},
                "selection": {name: sel.how for name, sel in selections(srcs).items()}}

    def evaluate(step: int) -> dict[str, Any]:
        backend.step = step
        was_training = backend.model.training
        backend.model.eval()
        run_id = f"step-{step}-{uuid.uuid4().hex[:8]}"
        try:
            store.create_run(run_id, run_id, snapshot, versions(), config.seed)
            run_model(model, cells, store, run_id, {label: backend}, RunSummary(run_id=run_id, resumed=False, cells=cells), lambda n: None)
            store.finish_run(run_id)
        finally:
            backend.model.train(was_training)
        return curve_point(summarize(store, [run_id], None))

    return evaluate


def _training_backend(spec: ModelSpec) -> Any:
    """The HF backend, with the step in its identity so no eval reuses another step's cache."""

    class TrainingBackend(HFBackend):
        step = 0
        nonce = uuid.uuid4().hex

        @property
        def identity(self) -> dict[str, Any]:
            return {**super().identity, "tuning": self.nonce, "step": self.step}

    return TrainingBackend(spec)


def tune(config: TuneConfig) -> TuneResult:
    """Fine-tune ``config.base`` on the tasks' train splits; save the best adapter (or model) and its card."""
    srcs = sources(config)
    n_train = check_examples(srcs)
    if config.base.backend != "hf":
        raise HarnessError(f"harness tune: only hf models can be tuned (got {config.base.label})")
    if config.base.adapter:
        raise HarnessError("harness tune: the base model must not carry an adapter")
    out = Path(config.output)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"harness tune: output folder '{out}' exists and is not empty; choose a new -o")
    _eval_cells(config, srcs, ModelSpec(name="check", model=config.base.model))

    require_transformers()
    if not config.full:
        require("peft", "hf")
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

    set_seed(config.seed)
    base = config.base
    if config.full and hf_options(base).dtype == "auto":
        base = base.model_copy(update={"dtype": "float32"})  # full fine-tuning wants float32 weights for AdamW
    device = resolve_device(base)
    if device.startswith("cuda:") and device != "cuda:0":  # Trainer always trains on cuda:0 of the visible devices
        raise HarnessError(f"harness tune: --device {device} is not supported; select the GPU with CUDA_VISIBLE_DEVICES and use --device cuda")
    precision = mixed_precision(device, resolve_dtype(base), config.full, device.startswith("cuda") and torch.cuda.is_bf16_supported())
    backend = _training_backend(base)
    if config.full:
        model = backend.model
    else:
        from peft import LoraConfig, get_peft_model

        check_target_modules(backend.model, config.target_modules)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(backend.model, lora)
    backend.model = model
    examples = mixture(srcs, config.max_steps * config.batch_size * config.grad_accum, config.seed)
    train = _tokenize(backend, examples)
    pad = backend.tokenizer.pad_token_id

    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".tune-", dir=out))
    evaluate = _evaluator(config, srcs, backend, workdir)
    curve: list[dict[str, Any]] = []
    metric_name = eval_metric(srcs)

    class HarnessTrainer(Trainer):
        """Evaluation is harness's own scoring of the held-out items, not the eval loss."""

        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
            start = time.perf_counter()
            point = evaluate(self.state.global_step)
            metrics = {f"{metric_key_prefix}_{metric_name}": point["mean"], f"{metric_key_prefix}_seconds": round(time.perf_counter() - start, 2)}
            train_loss = next((h["loss"] for h in reversed(self.state.log_history) if "loss" in h), None)
            curve.append(_curve_entry(self.state.global_step, metric_name, point, train_loss))
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    every = min(config.eval_steps, config.max_steps)  # at least one evaluation after training starts
    args = TrainingArguments(
        output_dir=str(workdir / "checkpoints"), max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
        eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model=f"eval_{metric_name}",
        greater_is_better=get_metric(srcs[0].task.spec.metrics[0], "metric").higher_is_better, logging_steps=max(1, min(10, config.eval_steps)),
        seed=config.seed, data_seed=config.seed, report_to="none", disable_tqdm=config.quiet, remove_unused_columns=False,
        use_cpu=backend.device == "cpu", bf16=precision.bf16, fp16=precision.fp16,
        dataloader_num_workers=0, save_only_model=True,
    )
    callbacks: list[Any] = [EarlyStoppingCallback(early_stopping_patience=config.patience)] if config.patience > 0 else []
    trainer = HarnessTrainer(model=model, args=args, train_dataset=train, eval_dataset=train[:1],
                             data_collator=_collate(pad), callbacks=callbacks)
    if config.quiet:  # with tqdm disabled Trainer prints every log dict to stdout; --quiet/--json want it silent
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    curve.append(_curve_entry(0, metric_name, evaluate(0), None))
    model.train()
    trainer.train()
    seconds = time.perf_counter() - start
    best_step = _best_step(trainer.state.best_model_checkpoint)
    trainer.model.save_pretrained(str(out))  # type: ignore[union-attr,operator]  # a PEFT/HF model after training
    if config.full:  # a whole model folder: `harness ab --tuned hf:OUT` loads it like any checkpoint
        backend.tokenizer.save_pretrained(str(out))
    shutil.rmtree(workdir, ignore_errors=True)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    autocast = " + bf16 autocast" if precision.bf16 else " + fp16 autocast" if precision.fp16 else ""
    result = TuneResult(out, best_step, trainer.state.best_metric, metric_name, curve, trainer.state.global_step, seconds,
                        backend.device, str(backend.dtype).removeprefix("torch.") + autocast, selections(srcs))
    write_card(config, result, losses, n_train, dict(Counter(e.source for e in examples)))
    return result


def _curve_entry(step: int, metric: str, point: dict[str, Any], train_loss: float | None) -> dict[str, Any]:
    return {"step": step, metric: point["mean"], "n": point["n"], "ci_low": point["ci_low"], "ci_high": point["ci_high"],
            "ci_method": point["ci_method"], "cells": point["cells"], "train_loss": train_loss}


def _best_step(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def write_card(config: TuneConfig, result: TuneResult, losses: list[dict[str, Any]], n_train: int, drawn: dict[str, int]) -> None:
    """tune_card.json (machine-readable) and TUNE_CARD.md (for people) next to the weights.

    ``drawn`` counts the training examples per source (task/template) in the drawn stream, so a
    mixture's real proportions are on record, not only its weights. ``selection`` and
    ``training`` hold, per task, the split, how it was made and the ids and content hashes of
    the items, so later checks (harness.tune.overlap) can find overlap with what is scored."""
    chosen = result.selections
    card = {
        "kind": "full" if config.full else "lora", "base_model": config.base.label, "tasks": list(config.tasks),
        "templates": list(config.prompts) or "each task's first", "train_items": n_train, "examples_by_source": drawn,
        "eval_split": {task: sel.split for task, sel in chosen.items()},
        "selection": {task: sel.record() for task, sel in chosen.items()},
        "training": {task: sel.training_record(config.train_split) for task, sel in chosen.items()},
        "content_hash": CONTENT_HASH,
        "config": config.card(),
        "metric": result.metric, "best_step": result.best_step, "best_metric": result.best_metric, "steps": result.steps,
        "stopped_early": result.steps < config.max_steps, "device": result.device, "precision": result.precision,
        "seconds": round(result.seconds, 1), "eval_curve": result.curve, "train_loss": losses, "versions": versions(),
    }
    (result.output / CARD_JSON).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    use = (f"harness ab --base {config.base.backend}:{config.base.model} --tuned hf:{result.output}" if config.full
           else f"harness ab --adapter {result.output} --task {' '.join(config.tasks)}")
    if config.prompts:
        use += f" --prompt {' '.join(config.prompts)}"
    early = f" (stopped early: no improvement in {config.patience} evaluations)" if card["stopped_early"] else ""
    last = result.curve[-1] if result.curve else {}

    def ci(p: dict[str, Any]) -> str:
        return "" if p.get("ci_low") is None else f"[{p['ci_low']:.4f}, {p['ci_high']:.4f}]"

    lines = [
        f"# Tuned {'model' if config.full else 'LoRA adapter'} of {config.base.label}", "",
        f"- tasks: {', '.join(config.tasks)} (split '{config.train_split}', {sum(len(sel.train) for sel in chosen.values())} items "
        f"trained on; {n_train} (item, template) pairs)",
        f"- templates: {', '.join(config.prompts) or 'each task' + chr(39) + 's first'}",
        *[f"- selection (early stopping, best checkpoint) for {task}: {sel.how}; never trained on"
          for task, sel in chosen.items()],
        *[f"- trained on for {task}: {len(sel.train)} of {sel.train_total} '{config.train_split}' items" for task, sel in chosen.items()],
        f"- training examples drawn per source: {', '.join(f'{k} {v}' for k, v in drawn.items())}",
        f"- steps: {result.steps} of {config.max_steps}{early}; best step {result.best_step} with {result.metric} = {result.best_metric}",
        f"- hyperparameters: {json.dumps(config.card(), ensure_ascii=False)}", "",
        "| step | " + result.metric + " (selection) | 95% CI | n | train loss |", "|---|---|---|---|---|",
        *[f"| {p['step']} | {p[result.metric]:.4f} | {ci(p)} | {p.get('n', '')} | "
          f"{'' if p['train_loss'] is None else round(p['train_loss'], 4)} |" for p in result.curve],
        "", f"Mean and interval: {last.get('ci_method', '')}.",
        f"Ids and content hashes ({CONTENT_HASH}) of the training and selection items: `training` and `selection` in {CARD_JSON}.",
        "", f"A/B it against its base: `{use}`", "",
    ]
    (result.output / CARD_MD).write_text("\n".join(lines))
