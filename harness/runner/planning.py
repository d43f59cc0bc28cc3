"""Planning: the matrix -> cells, each item -> its prompt, demonstrations and requests.

``plan`` renders every evaluated item (and every demonstration of the pool) with every template of the
run, and the first item of each cell with its selector, so a broken template or a row missing a field
fails before any model is loaded or any item is stored, naming the task, template and item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.backends import ModelSpec, backend_class
from harness.core.errors import HarnessError, did_you_mean, existing_dir, shorten
from harness.fewshot.selectors import SELECTORS, Selector, draw_rng
from harness.prompts.template import PromptTemplate, Rendered, load_prompt
from harness.requests import GenerateRequest, LoglikelihoodRequest, Request, loglikelihood_requests
from harness.runner.anchors import AnchorsFile, anchors_by_task
from harness.runner.spec import ExperimentSpec
from harness.scoring.checks import check_task
from harness.tasks.subsets import select_items
from harness.tasks.task import Item, Task, find_task


@dataclass(frozen=True)
class Cell:
    task: Task
    template: PromptTemplate
    shots: int
    selector: str  # "none" for zero-shot, where selectors make no difference
    model: ModelSpec
    seed: int
    items: tuple[Item, ...]
    pool: tuple[Item, ...]
    max_tokens: int | None = None  # experiment-level cap on generation.max_tokens
    draw: int = 0  # demonstration draw (--draws): mixed into each item's few-shot RNG seed
    subset: tuple[Any, ...] | None = None  # ExperimentSpec.subset_key(): a sampled/stratified subset is a cell of its own
    # item id -> (the item, its zero-shot rendering), made by ``check_renders`` at planning: a zero-shot cell reuses it
    # for that very item (``prepare``; an item replaced under the same id, e.g. by calibration, is rendered afresh)
    zero_shot: Mapping[str, tuple[Item, Rendered]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def cell_id(self) -> str:
        key = [self.task.name, self.template.name, self.template.sha256, self.shots, self.selector, self.model.label, self.seed]
        if self.max_tokens and self.task.kind.scoring == "generation":  # only capped cells get a different id
            key.append(self.max_tokens)
        if self.draw:  # draw 0 keeps the id it had before draws existed
            key.append(["draw", self.draw])
        if self.subset is not None:  # --sample / --stratify; the first N items (--limit) keep the id they always had
            key.append(["subset", *self.subset])
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]

    @property
    def selector_label(self) -> str:
        """The selector as stored and shown: ``random draw 2`` for draws after the first."""
        return f"{self.selector} draw {self.draw}" if self.draw else self.selector

    @property
    def label(self) -> str:
        return f"{self.task.name} | {self.template.name} | {self.shots}-shot {self.selector_label} | {self.model.label}"


@dataclass(frozen=True)
class Prepared:
    """One item ready for the backend: its rendering, demonstrations and requests."""

    position: int
    item: Item
    rendered: Rendered
    demo_ids: tuple[str, ...]
    requests: tuple[Request, ...]


# -- planning -----------------------------------------------------------------------
def plan(spec: ExperimentSpec) -> list[Cell]:
    """Expand the matrix and check every item renders, before any model is loaded."""
    task_dirs = [existing_dir(d, "tasks folder (--tasks-dir, 'tasks_dirs')") for d in spec.tasks_dirs]
    data_dirs = [existing_dir(d, "data folder (--data-dir, 'data_dirs')") for d in spec.data_dirs]
    prompt_dirs = [existing_dir(d, "prompts folder (--prompts-dir, 'prompts_dirs')") for d in spec.prompts_dirs]
    cells: list[Cell] = []
    # a group task (e.g. mmlu) expands into its members (mmlu_anatomy, ...), one set of cells each;
    # check_task has built every metric and filter of the task (its members share them)
    tasks = [member for ref in spec.tasks for member in check_task(find_task(ref, task_dirs, data_dirs)).members()]
    anchored = anchors_by_task(spec.anchors) if spec.anchors else {}
    check_anchored(anchored, tasks)
    for task in tasks:
        subset = spec.subset_key()
        if anchored:
            path, anchors = anchored[task.group or task.name]
            items = anchor_items(task, task.items(spec.split), anchors, path, spec.split)
            subset = ("anchors", anchors.identity())
        else:
            items = tuple(select_items(task, task.items(spec.split), limit=spec.limit, sample=spec.sample, stratify=spec.stratify,
                                       seed=spec.seed))
        if not items:
            raise HarnessError(f"task '{task.name}': split '{spec.split}' has no rows")
        templates = [load_prompt(task, name, prompt_dirs) for name in (spec.prompts or task.spec.prompts)]
        needs_pool = any(k > 0 for k in spec.shots)
        pool = tuple(task.items(spec.fewshot_split)) if needs_pool else ()
        renderings = {template.name: check_renders(task, template, items, pool, spec.fewshot_split) for template in templates}
        for model in spec.models:
            for template in templates:
                for shots in spec.shots:
                    for selector in spec.selectors if shots > 0 else ["none"]:
                        for draw in range(spec.draws if shots > 0 else 1):
                            cell = Cell(task, template, shots, selector, model, spec.seed, items, pool, spec.max_tokens, draw,
                                        subset=subset, zero_shot=renderings[template.name] if shots == 0 else {})
                            first = prepare(cell, 0, items[0], selector_for(cell))  # fail fast on template errors
                            _check_capabilities(cell, first)
                            cells.append(cell)
                        if shots == 0:
                            break
    return cells


def check_anchored(anchored: Mapping[str, tuple[str, AnchorsFile]], tasks: Sequence[Task]) -> None:
    """--anchors: one file for every task of the run (a group task's file covers its members), none for another task,
    and the file's metric among the task's."""
    if not anchored:
        return
    names = {task.group or task.name: task for task in tasks}
    for name, (path, anchors) in anchored.items():
        if name not in names:
            raise HarnessError(f"--anchors '{path}' is for task '{name}', which this run does not evaluate.{did_you_mean(name, names)} "
                               f"The run's tasks: {', '.join(names)}")
        if anchors.metric not in names[name].spec.metrics:
            raise HarnessError(f"--anchors '{path}': fitted on metric '{anchors.metric}', which task '{name}' does not compute "
                               f"(its metrics: {', '.join(names[name].spec.metrics)})")
    missing = [name for name in names if name not in anchored]
    if missing:
        raise HarnessError(f"--anchors: no anchors file for task(s) {', '.join(missing)}; an anchored run needs one per task "
                           "(harness anchors TASK --from RUN -k K -o FILE), or run them separately")


def anchor_items(task: Task, items: Sequence[Item], anchors: AnchorsFile, path: str, split: str) -> tuple[Item, ...]:
    """The task's anchor items, in split order; an anchor missing from the split (changed data) is an error."""
    wanted = set(anchors.anchor_ids(task.name if task.group else None))
    chosen = tuple(item for item in items if item.id in wanted)
    if len(chosen) < len(wanted):
        absent = sorted(wanted - {item.id for item in chosen})
        raise HarnessError(f"--anchors '{path}': {len(absent)} anchor item(s) of task '{task.name}' are not in its '{split}' "
                           f"split ({', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}): the data changed since the anchors were fitted")
    return chosen


def check_renders(task: Task, template: PromptTemplate, items: Sequence[Item], pool: Sequence[Item], pool_split: str) -> dict[str, tuple[Item, Rendered]]:
    """Render every item zero-shot, and every pool row as the one demonstration of the first item, so a row
    without a field the template reads fails here, naming task, template and item, not after a model loaded
    and earlier chunks were stored. No selector runs (a kNN selector's embeddings are built once, by the
    cells). Returns the zero-shot renderings (item id -> (item, Rendered)): zero-shot cells reuse them, so the check
    costs those cells nothing; a few-shot cell pays one extra rendering per item and pool row."""
    where = f"task '{task.name}', template '{template.name}'"
    rendered: dict[str, tuple[Item, Rendered]] = {}
    for item in items:
        try:
            rendered[item.id] = (item, template.render(task, item, ()))
        except HarnessError as exc:
            named = f"item {item.id!r}" in str(exc)  # the template's own message names the item already
            raise HarnessError(f"{where}{'' if named else f', item {shorten(item.id, 80)}'}: {exc}") from None
    for shot in pool:
        try:
            template.render(task, items[0], (shot,))
        except HarnessError as exc:
            raise HarnessError(f"{where}, demonstration {shorten(shot.id, 80)} (split '{pool_split}', shown with item "
                               f"{shorten(items[0].id, 80)}): {exc}") from None
    return rendered


def _check_capabilities(cell: Cell, first: Prepared) -> None:
    """The cell against what its model can do (``Backend.capabilities``, from the spec and files, no
    model loaded), here at planning, so a run that cannot work fails before any cell runs: a chat
    template on a model without one, log-likelihood scoring where the model has none and no
    fallback, per-choice contexts where they cannot be scored (e.g. the API's generate-and-parse
    fallback, which shows one context)."""
    chat = not isinstance(first.rendered.prompt, str)
    can = backend_class(cell.model).capabilities(cell.model, chat=chat)
    model = f"model '{cell.model.label}'"
    if not can.prompt:
        kind = "a chat template (*.chat.jinja)" if chat else "a plain-text template"
        raise HarnessError(f"task '{cell.task.name}': template '{cell.template.name}' ({cell.template.path}) is {kind}, but {model} "
                           f"{can.reason('prompt')}")
    if not any(isinstance(r, LoglikelihoodRequest) for r in first.requests):
        return
    if first.rendered.prompts:
        if not can.per_choice_contexts:
            raise HarnessError(f"task '{cell.task.name}' has per-choice contexts ('contexts:' in {cell.task.yaml_path}), but {model} "
                               f"{can.reason('per_choice_contexts')}")
    elif not can.loglikelihood and not can.mc_fallback:
        raise HarnessError(f"task '{cell.task.name}' scores each choice by its log-likelihood, but {model} {can.reason('loglikelihood')}")


def selector_for(cell: Cell) -> Selector | None:
    return SELECTORS.get(cell.selector)(cell.pool) if cell.shots > 0 else None


UNCONDITIONAL_METRIC = "acc_mutual_info"  # a task listing it gets one extra request per continuation, see ``prepare``


def prepare(cell: Cell, position: int, item: Item, selector: Selector | None) -> Prepared:
    shots = selector.select(item, cell.shots, draw_rng(cell.seed, item.id, cell.draw)) if selector else []
    ready = cell.zero_shot.get(item.id) if not shots else None
    rendered = ready[1] if ready is not None and ready[0] is item else cell.template.render(cell.task, item, shots)
    requests: tuple[Request, ...]
    if cell.task.kind.scoring == "loglikelihood":  # the kinds table (harness.tasks.kinds) says how a task is scored
        requests = loglikelihood_requests(rendered)  # per-choice contexts: each continuation after its own prompt
        if UNCONDITIONAL_METRIC in cell.task.spec.metrics:
            # lm-eval's acc_mutual_info: each continuation again after an empty context, ("", " Paris"), after the
            # conditional requests in the same order; cached and stored with the item like them (scorer.split_unconditional)
            requests += tuple(LoglikelihoodRequest(context="", continuation=r.continuation) for r in requests)
    else:
        gen = cell.task.spec.generation
        max_tokens = min(gen.max_tokens, cell.max_tokens) if cell.max_tokens else gen.max_tokens
        requests = tuple(  # one request per sample; ``repeat`` keeps samples apart in the cache
            GenerateRequest(prompt=rendered.prompt, max_tokens=max_tokens, stop=tuple(gen.stop), temperature=gen.temperature,
                            seed=cell.seed, repeat=r)
            for r in range(cell.task.spec.repeats)
        )
    return Prepared(position, item, rendered, tuple(s.id for s in shots), requests)


