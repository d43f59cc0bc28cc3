"""Instruction tuning: a task's train split rendered through a prompt template -> a tuned adapter.

Why it looks like this:
- Training examples are tokenised by the HF backend's own ``_encode_pair`` (prompt, target
  continuation), so the model is trained on exactly the token split it is later scored on;
  labels are -100 on the prompt, so the loss is on the target tokens only.
- The held-out evaluation every N steps goes through ``run_experiment`` (harness's own
  prompts, requests and metrics) with the in-training model as a ready backend, in a scratch
  store; its main metric drives early stopping and best-checkpoint selection in the Trainer.
- Mixtures: every (task, template) pair is a source; examples are drawn from sources by
  weight with a seeded RNG, so the same inputs and seed give the same training stream.
- Every bad input (no train split, an empty target, an unknown LoRA target module) is a
  HarnessError raised before the first optimiser step.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import ModelSpec
from harness.errors import HarnessError
from harness.prompts import PromptTemplate, load_prompt
from harness.tasks import Item, Task, find_task

CARD_JSON = "tune_card.json"
CARD_MD = "TUNE_CARD.md"


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
    eval_split: str = "validation"  # falls back to 'test' when the task has no such split
    eval_limit: int | None = 50
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


@dataclass(frozen=True)
class Source:
    """One (task, template) pair of the mixture with its sampling weight."""

    task: Task
    template: PromptTemplate
    weight: float
    items: tuple[Item, ...]


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
        task = find_task(name, [Path(d) for d in config.tasks_dirs], [Path(d) for d in config.data_dirs])
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
        names = list(config.prompts) or task.spec.prompts[:1]
        templates = [load_prompt(task, p, [Path(d) for d in config.prompts_dirs]) for p in names]
        out.extend(Source(task, t, weight / len(templates), items) for t in templates)
    return out


def target_text(task: Task, template: PromptTemplate, item: Item) -> Example:
    """The prompt and the text the model should produce for one training item."""
    rendered = template.render(task, item, [])
    where = f"task '{task.name}', template '{template.name}', item '{item.id}'"
    if task.spec.type in ("multiple_choice", "classification"):
        assert isinstance(item.target, int)
        index = item.target
        if item.verbalizers is not None:  # the first word of the gold label
            index = sum(len(words) for words in item.verbalizers[: item.target])
        target = rendered.continuations[index]
    else:
        target = item.target[0] if item.target else ""
        prompt = rendered.prompt
        if isinstance(prompt, str) and target and not prompt[-1:].isspace() and not target[:1].isspace():
            target = " " + target
    if not target.strip():
        raise HarnessError(f"harness tune: {where} has an empty target; the template's answer (or the item's reference) must be non-empty text")
    return Example(rendered.prompt, target, f"{task.name}/{template.name}", item.id, task.spec.type == "generate")


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
    return sum(1 for s in srcs for item in s.items if target_text(s.task, s.template, item))


def eval_split(task: Task, config: TuneConfig) -> str:
    if task.has_split(config.eval_split):
        return config.eval_split
    if task.has_split("test"):
        return "test"
    raise HarnessError(f"harness tune: task '{task.name}' has neither a '{config.eval_split}' nor a 'test' split to evaluate on")


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
    from harness.requests import LoglikelihoodRequest

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
                batch["logits_to_keep"] = keep
                labels = labels[:, -keep:]
        batch["labels"] = labels
        return batch

    return collate


def _eval_spec(config: TuneConfig, srcs: list[Source], label: str) -> Any:
    from harness.runner import ExperimentSpec

    tasks = sorted({s.task.name for s in srcs})
    splits = {eval_split(s.task, config) for s in srcs}
    if len(splits) > 1:
        raise HarnessError(f"harness tune: tasks evaluate on different splits ({', '.join(sorted(splits))}); set --eval-split to one all have")
    return ExperimentSpec(
        tasks=tasks, prompts=sorted({s.template.name for s in srcs}), models=[ModelSpec(name=label, model=config.base.model)],
        limit=config.eval_limit, seed=config.seed, split=splits.pop(), tasks_dirs=list(config.tasks_dirs),
        prompts_dirs=list(config.prompts_dirs), data_dirs=list(config.data_dirs),
    )


def eval_metric(srcs: list[Source]) -> str:
    """Each task's main metric; their mean (over tasks x templates) drives early stopping."""
    names = {s.task.spec.metrics[0] for s in srcs}
    return names.pop() if len(names) == 1 else "main_metric"


def _evaluator(config: TuneConfig, srcs: list[Source], backend: Any, workdir: Path) -> Any:
    """A function(step) -> (metric name, mean over all eval cells' items) via run_experiment."""
    from harness.compare import summarize
    from harness.runner import run_experiment
    from harness.store import Store

    store = Store(workdir / "eval.sqlite")
    label = f"tuning-{uuid.uuid4().hex[:8]}"
    spec = _eval_spec(config, srcs, label)
    metric = eval_metric(srcs)

    def evaluate(step: int) -> tuple[str, float]:
        backend.step = step
        was_training = backend.model.training
        backend.model.eval()
        try:
            summary = run_experiment(spec, store, new=True, backends={label: backend}, show_progress=False)
        finally:
            backend.model.train(was_training)
        means = [c.interval.mean for c in summarize(store, [summary.run_id], None, resamples=200)]
        return metric, sum(means) / len(means) if means else float("nan")

    return evaluate


def _training_backend(spec: ModelSpec) -> Any:
    """The HF backend, with the step in its identity so no eval reuses another step's cache."""
    from harness.backends.hf import HFBackend

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
    for s in srcs:
        eval_split(s.task, config)
    if config.base.backend != "hf":
        raise HarnessError(f"harness tune: only hf models can be tuned (got {config.base.label})")
    if config.base.adapter:
        raise HarnessError("harness tune: the base model must not carry an adapter")
    out = Path(config.output)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"harness tune: output folder '{out}' exists and is not empty; choose a new -o")
    _eval_spec(config, srcs, "check")

    from harness.backends.base import require
    from harness.backends.hf import require_transformers, resolve_device, resolve_dtype

    require_transformers()
    if not config.full:
        require("peft", "hf")
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

    from harness.scoring.metrics import get_metric

    set_seed(config.seed)
    base = config.base
    if config.full and base.dtype == "auto":
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
            name, value = evaluate(self.state.global_step)
            metrics = {f"{metric_key_prefix}_{name}": value, f"{metric_key_prefix}_seconds": round(time.perf_counter() - start, 2)}
            train_loss = next((h["loss"] for h in reversed(self.state.log_history) if "loss" in h), None)
            curve.append({"step": self.state.global_step, name: value, "train_loss": train_loss})
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
    callbacks = [EarlyStoppingCallback(early_stopping_patience=config.patience)] if config.patience > 0 else []
    trainer = HarnessTrainer(model=model, args=args, train_dataset=train, eval_dataset=train[:1],
                             data_collator=_collate(pad), callbacks=callbacks)
    if config.quiet:  # with tqdm disabled Trainer prints every log dict to stdout; --quiet/--json want it silent
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    name, value = evaluate(0)
    curve.append({"step": 0, name: value, "train_loss": None})
    model.train()
    trainer.train()
    seconds = time.perf_counter() - start
    best_step = _best_step(trainer.state.best_model_checkpoint)
    trainer.model.save_pretrained(str(out))
    if config.full:  # a whole model folder: `harness ab --tuned hf:OUT` loads it like any checkpoint
        backend.tokenizer.save_pretrained(str(out))
    shutil.rmtree(workdir, ignore_errors=True)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    autocast = " + bf16 autocast" if precision.bf16 else " + fp16 autocast" if precision.fp16 else ""
    result = TuneResult(out, best_step, trainer.state.best_metric, metric_name, curve, trainer.state.global_step, seconds,
                        backend.device, str(backend.dtype).removeprefix("torch.") + autocast)
    write_card(config, result, losses, n_train, dict(Counter(e.source for e in examples)))
    return result


def _best_step(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def write_card(config: TuneConfig, result: TuneResult, losses: list[dict[str, Any]], n_train: int, drawn: dict[str, int]) -> None:
    """tune_card.json (machine-readable) and TUNE_CARD.md (for people) next to the weights.

    ``drawn`` counts the training examples per source (task/template) in the drawn stream, so a
    mixture's real proportions are on record, not only its weights."""
    from harness.runner import versions

    card = {
        "kind": "full" if config.full else "lora", "base_model": config.base.label, "tasks": list(config.tasks),
        "templates": list(config.prompts) or "each task's first", "train_items": n_train, "examples_by_source": drawn,
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
    lines = [
        f"# Tuned {'model' if config.full else 'LoRA adapter'} of {config.base.label}", "",
        f"- tasks: {', '.join(config.tasks)} (split '{config.train_split}', {n_train} items)",
        f"- templates: {', '.join(config.prompts) or 'each task' + chr(39) + 's first'}",
        f"- training examples drawn per source: {', '.join(f'{k} {v}' for k, v in drawn.items())}",
        f"- steps: {result.steps} of {config.max_steps}{early}; best step {result.best_step} with {result.metric} = {result.best_metric}",
        f"- hyperparameters: {json.dumps(config.card(), ensure_ascii=False)}", "",
        "| step | " + result.metric + " (held-out) | train loss |", "|---|---|---|",
        *[f"| {p['step']} | {p[result.metric]:.4f} | {'' if p['train_loss'] is None else round(p['train_loss'], 4)} |" for p in result.curve],
        "", f"A/B it against its base: `{use}`", "",
    ]
    (result.output / CARD_MD).write_text("\n".join(lines))
