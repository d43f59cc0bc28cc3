"""Tasks: a folder with ``task.yaml`` plus data (JSONL, JSON, CSV/TSV, parquet, a save_to_disk
folder: ``sources``), validated strictly, turned into Items.

The YAML is parsed with a ``yaml.SafeLoader`` that refuses duplicate keys, deep nesting and alias
bombs (``harness.core.yamlfile``) and validated by pydantic with unknown keys
rejected, so a typo (``metric:`` for ``metrics:``) is an error naming the field with a
did-you-mean rather than a silently ignored setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.core.errors import HarnessError, clip, did_you_mean, shorten
from harness.core.paths import bundled_dir
from harness.core.templating import JINJA_ERRORS, compile_expression, explain
from harness.core.yamlfile import load_yaml, read_yaml_mapping, validate
from harness.tasks.kinds import TaskKind, TaskType, kind_names, task_kind
from harness.tasks.sources import DataSource, FileSource, HubSource, HubSplit, Origin, Rows, is_data

DATA_DIR_ENV = "HARNESS_DATA_DIR"
TASKS_DIR_ENV = "HARNESS_TASKS_DIR"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Split = str | HubSplit


class DataSpec(_Strict):
    """Split name -> data file or folder (relative to the task folder or a data directory): .jsonl, .json
    (an array), .csv, .tsv, .parquet, a folder written by datasets' save_to_disk; or a hub dataset's
    split, ``{hf: {path, name, split, revision}}``."""

    test: Split = Field(description="the evaluated split")
    fewshot: Split | None = Field(default=None, description="pool of demonstrations")
    validation: Split | None = None
    train: Split | None = None


class GenerationSpec(_Strict):
    max_tokens: int = Field(default=64, ge=1, le=32768)
    stop: list[str] = Field(default_factory=list)
    temperature: float = Field(default=0.0, ge=0.0, le=10.0, description="0 = greedy; > 0 samples (seeded per run seed and repeat)")


class SubtaskSpec(_Strict):
    """Makes a task a group: one member task per distinct value of ``by`` (MMLU: the subject).

    Members are named ``<task>_<value>``, see only their own rows (few-shot pool included)
    and are aggregated as ``micro`` (all items pooled) and ``macro`` (mean of member scores).
    """

    by: str = Field(description="expression giving a row's member key, e.g. 'subject'")
    aggregate: list[Literal["micro", "macro"]] = Field(default=["micro", "macro"], min_length=1)


FilterStep = str | dict[str, Any]


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    type: TaskType
    data: DataSpec
    id: str | None = Field(default=None, description="expression for a stable item id; default: the row's 'id' or its line")
    input: str
    choices: str | None = None
    contexts: str | None = Field(
        default=None,
        description="multiple_choice with per-choice contexts (Winograd style, lm-eval's multiple inputs): a list with one "
        "context per choice; the template renders the prompt once per choice (its 'context'), and only the shared "
        "'continuation' is scored",
    )
    continuation: str | None = Field(default=None, description="with 'contexts': the continuation scored after every choice's context")
    target: str
    target_format: Literal["choice", "labels"] = Field(
        default="choice",
        description="multiple_choice: 'choice' (default): target gives one correct choice (an index or a choice's text) or a "
        "list of correct choices; 'labels': target gives one 0/1 (or true/false) flag per choice, e.g. '{{ mc2_targets.labels }}'",
    )
    label: str | None = Field(default=None, description="expression used by label-balanced selection; default: target")
    cluster: str | None = Field(
        default=None,
        description="expression naming the group an item belongs to (its passage, source document...), e.g. '{{ context }}': "
        "items with the same value are correlated, so per-cell CIs and paired tests resample whole clusters; default: none "
        "(every item on its own)",
    )
    group: str | None = Field(
        default=None,
        description="expression naming the rows that belong together (twin sentences, one passage, one source question), "
        "e.g. '{{ passage_id }}': no item is ever given a demonstration of its own group; default: none",
    )
    prompts: list[str] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    filters: list[FilterStep] = Field(default_factory=list)
    verbalizers: dict[str, str | list[str]] | None = Field(
        default=None, description="classification: label -> word(s) scored by log-likelihood (a label scores the logsumexp of its words)"
    )
    repeats: int = Field(default=1, ge=1, le=1000, description="generate: samples per item (use a temperature > 0)")
    subtasks: SubtaskSpec | None = None
    source: str | None = Field(default=None, description="where to get the data (shown when a data file is missing)")

    @property
    def kind(self) -> TaskKind:
        return task_kind(self.type)

    @model_validator(mode="after")
    def _fields_for_the_kind(self) -> TaskSpec:
        """The fields a kind takes (see ``harness.tasks.kinds``); the messages name the kinds that take them."""
        kind = self.kind
        if kind.choices == "expression" and not self.choices:
            raise ValueError(f"a {self.type} task needs 'choices' (an expression giving the list of choices)")
        if (self.contexts is None) != (self.continuation is None):
            given, missing = ("contexts", "continuation") if self.continuation is None else ("continuation", "contexts")
            raise ValueError(f"'{given}' needs '{missing}': per-choice contexts are scored on one shared continuation")
        if self.contexts is not None and not kind.per_choice_contexts:
            allowed = ", ".join(kind_names(lambda k: k.per_choice_contexts))
            raise ValueError(f"'contexts' and 'continuation' (per-choice contexts) are for type: {allowed}, not {self.type}")
        if kind.choices == "verbalizers":
            if not self.verbalizers:
                raise ValueError(f"a {self.type} task needs 'verbalizers' (label -> word or list of words)")
            if self.choices:
                raise ValueError(f"a {self.type} task takes its choices from 'verbalizers'; remove 'choices'")
            if len(self.verbalizers) < MIN_CHOICES:
                raise ValueError(f"verbalizers: a {self.type} task needs at least {MIN_CHOICES} labels, got {len(self.verbalizers)}")
            if any(not (words if isinstance(words, list) else [words]) for words in self.verbalizers.values()):
                raise ValueError("verbalizers: every label needs at least one word")
        elif self.verbalizers:
            raise ValueError(f"'verbalizers' is for type: {', '.join(kind_names(lambda k: k.has_labels))}, not {self.type}")
        if self.target_format != "choice" and not kind.several_correct:
            allowed = ", ".join(kind_names(lambda k: k.several_correct))
            raise ValueError(f"'target_format: {self.target_format}' is for {allowed} tasks (several correct choices), not {self.type}")
        if self.verbalizers and _is_code_keyed(self.verbalizers):
            codes: dict[int, str] = {}
            for key in self.verbalizers:
                if int(key) in codes:
                    raise ValueError(f"verbalizers: keys {codes[int(key)]!r} and {key!r} are the same label code {int(key)}")
                codes[int(key)] = key
        if self.repeats > 1 and not kind.repeats:
            allowed = ", ".join(kind_names(lambda k: k.repeats))
            raise ValueError(f"'repeats' > 1 is for {allowed} tasks (log-likelihood scores do not vary between samples)")
        return self

    @field_validator("verbalizers", mode="before")
    @classmethod
    def _label_codes_as_text(cls, value: Any) -> Any:
        """YAML keys may be integers (label codes, ``100: politics``): labels are their text ("100")."""
        if not isinstance(value, dict):
            return value
        out: dict[Any, Any] = {}
        for key, words in value.items():
            name = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if name in out:
                raise ValueError(f"verbalizers: key {key!r} repeats the label {name!r}")
            out[name] = words
        return out


@dataclass(frozen=True)
class Item:
    """One evaluated row with its derived fields; ``id`` is stable across runs (pairing key)."""

    id: str
    row: dict[str, Any]
    input: str
    target: int | tuple[str, ...]
    choices: tuple[str, ...] | None = None
    label: str = ""
    # classification: the words scored for each choice (label), parallel to ``choices``
    verbalizers: tuple[tuple[str, ...], ...] | None = None
    cluster: str | None = None  # the task's ``cluster:`` value (e.g. the passage); None when the task declares none
    group: str | None = None  # the task's ``group:`` value: never a demonstration of an item of the same group; None: no group
    # multiple choice with several correct choices (``target:`` a list, or ``target_format: labels``): all of them, in the
    # task's order; ``target`` is the first (what demonstrations show and ``harness tune`` trains on). None: only ``target``.
    correct: tuple[int, ...] | None = None
    # per-choice contexts (``contexts:`` + ``continuation:``): one context per choice, parallel to ``choices``, and the
    # shared continuation scored after each of them; None for every other task
    contexts: tuple[str, ...] | None = None
    continuation: str | None = None

    def __post_init__(self) -> None:
        # a stored multi-answer target is a JSON list of indices: ``Item(target=(0, 2), choices=...)`` (rescore) means
        # correct=(0, 2), target=0; replacing ``target`` by a single index drops a ``correct`` that does not start with it
        if self.choices is not None and isinstance(self.target, (tuple, list)):
            indices = tuple(int(t) for t in self.target)
            if not indices:
                raise HarnessError(f"item {self.id!r}: a multiple-choice target needs at least one correct choice")
            object.__setattr__(self, "target", indices[0])
            object.__setattr__(self, "correct", indices if len(indices) > 1 else None)
        elif self.correct is not None and (not isinstance(self.target, int) or len(self.correct) < 2 or self.correct[0] != self.target):
            object.__setattr__(self, "correct", None)

    @property
    def correct_choices(self) -> tuple[int, ...]:
        """The indices of every correct choice (one for a single-answer item); () for generate items."""
        if self.correct is not None:
            return self.correct
        return (self.target,) if isinstance(self.target, int) else ()

    def stored_target(self) -> int | list[Any]:
        """The target as stored per item (``target_json``): an index, a list of correct indices, or the references."""
        if self.correct is not None:
            return list(self.correct)
        return self.target if isinstance(self.target, int) else list(self.target)

    @property
    def references(self) -> tuple[str, ...]:
        """The gold strings a text metric compares the extracted answer with (see ``target_references``)."""
        return target_references(self.stored_target(), self.choices if self.verbalizers is not None else None)

    def template_vars(self) -> dict[str, Any]:
        """What a prompt template sees: the row's own fields plus the derived ones."""
        target: Any = self.target if isinstance(self.target, int) else self.target[0]
        # ``row`` keeps the raw fields reachable where a derived name shadows one (GSM8K's 'answer'); a copy of its lists
        # and mappings, so a template's ``row.update(...)`` or ``options.append(...)`` cannot change the data other
        # templates, cells and items see
        row = _copied(self.row)
        variables = {**row, "row": row, "id": self.id, "input": self.input, "choices": list(self.choices or ()), "target": target}
        if self.contexts is not None:  # per-choice contexts; each choice's rendering also gets its own 'context'
            variables.update(contexts=list(self.contexts), continuation=self.continuation)
        return variables


def _copied(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its dicts and lists copied, however deep (without recursion: a row may nest hundreds deep); strings
    and numbers are immutable and shared."""
    top: dict[Any, Any] = dict(row)
    stack: list[Any] = [top]
    while stack:
        container = stack.pop()
        keys = list(container) if isinstance(container, dict) else range(len(container))
        for key in keys:
            value = container[key]
            if isinstance(value, (dict, list)):
                container[key] = copy = dict(value) if isinstance(value, dict) else list(value)
                stack.append(copy)
    return top


def target_references(target: Any, labels: Sequence[str] | None = None) -> tuple[str, ...]:
    """The gold strings of a stored target (``Item.stored_target``, ``target_json``): a generate item's
    references; for classification (``labels``: the task's labels) the gold label's name. Per-item
    metrics (``Item.references``) and corpus metrics (stored rows) both read it, so an item's
    references are the same either way; a choice index without labels stays its digits.

    Not the same on purpose: demonstrations and ``harness tune`` show one answer (the first
    reference, ``Item.template_vars``' ``target``), and reports show the choice's text."""
    if isinstance(target, int):
        return (labels[target],) if labels and 0 <= target < len(labels) else (str(target),)
    if isinstance(target, (list, tuple)):
        return tuple(str(t) for t in target)
    return (str(target),)


@dataclass(frozen=True)
class Task:
    spec: TaskSpec
    folder: Path
    yaml_path: Path
    data_dirs: tuple[Path, ...] = ()
    _cache: dict[str, list[Item]] = field(default_factory=dict, compare=False, repr=False)
    group: str | None = None  # the group task this one is a member of (see SubtaskSpec)
    subset: tuple[str, str] | None = None  # member of a group: (key expression, this member's key)
    # a group's rows by member key, per split, shared by the group and its members: a split is read and its key
    # expression evaluated once per row, not once per member (MMLU: 57 members read 14,042 rows 57 times)
    _partitions: dict[str, tuple[Origin, dict[str, Rows]]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> TaskKind:
        return self.spec.kind

    @property
    def labels(self) -> tuple[str, ...]:
        """Classification labels, in verbalizer order (empty for other task types)."""
        return tuple(self.spec.verbalizers or ())

    @cached_property
    def label_codes(self) -> dict[int, int] | None:
        """Verbalizers keyed by integer codes (``100: politics``): code -> label index; None otherwise."""
        verbalizers = self.spec.verbalizers or {}
        return {int(key): i for i, key in enumerate(verbalizers)} if _is_code_keyed(verbalizers) else None

    def subtask_keys(self) -> list[str]:
        """Member keys of a group task, in order of first appearance in the test split."""
        if self.spec.subtasks is None or self.subset is not None:
            return []
        return list(self._partition("test")[1])

    def _partition(self, split: str) -> tuple[Origin, dict[str, Rows]]:
        """The split's rows grouped by the group's key expression (keys in order of first appearance)."""
        if split not in self._partitions:
            assert self.spec.subtasks is not None
            by = compile_expression(self.spec.subtasks.by, f"{self.yaml_path}: field 'subtasks.by'")
            origin, rows = self.split_source(split).load()
            groups: dict[str, Rows] = {}
            for line, row in rows:
                groups.setdefault(str(by(row)), []).append((line, row))
            self._partitions[split] = (origin, groups)
        return self._partitions[split]

    def members(self) -> list[Task]:
        """The member tasks of a group task (itself if it is not a group)."""
        if self.spec.subtasks is None or self.subset is not None:
            return [self]
        return [self.member(key) for key in self.subtask_keys()]

    def member(self, key: str) -> Task:
        assert self.spec.subtasks is not None
        spec = self.spec.model_copy(update={"name": f"{self.name}_{key}"})
        return Task(spec, self.folder, self.yaml_path, self.data_dirs, group=self.name, subset=(self.spec.subtasks.by, key),
                    _partitions=self._partitions)

    def has_split(self, split: str) -> bool:
        return getattr(self.spec.data, split, None) is not None

    def split_source(self, split: str) -> DataSource:
        """The split's data: a file or folder (resolved against the task folder and data dirs), or a hub dataset."""
        value = getattr(self.spec.data, split, None)
        if value is None:
            splits = [s for s in type(self.spec.data).model_fields if getattr(self.spec.data, s, None) is not None]
            raise HarnessError(f"{self.yaml_path}: task '{self.name}' has no '{split}' split under 'data'.{did_you_mean(split, splits)} "
                               f"Its splits: {', '.join(splits)}")
        if isinstance(value, HubSplit):  # the one place a split's two spellings in task.yaml are told apart
            return HubSource(value.hf)
        return FileSource(resolve_data_path(value, self.folder, self.data_dirs, f"{self.yaml_path}: data.{split}", self.spec.source or ""))

    def split_label(self, split: str) -> str:
        """What the split is, for messages and for telling two splits apart."""
        return self.split_source(split).label()

    def split_fingerprint(self, split: str) -> str:
        """What the run's provenance records for the split's data."""
        return self.split_source(split).fingerprint()

    def items(self, split: str = "test") -> list[Item]:
        if split not in self._cache:
            if self.subset is not None:
                origin, groups = self._partition(split)
                rows = groups.get(self.subset[1], [])
            else:
                origin, rows = self.split_source(split).load()
                if not rows:
                    raise HarnessError(f"{origin.label}: the '{split}' split has no rows (an empty file?)")
            self._cache[split] = [self._make_item(row, origin, line) for line, row in rows]
            _check_unique_ids(self._cache[split], [line for line, _ in rows], origin)
        return self._cache[split]

    @cached_property
    def _expressions(self) -> dict[str, Any]:
        spec, where = self.spec, str(self.yaml_path)
        names = {"input": spec.input, "target": spec.target, "choices": spec.choices, "id": spec.id, "label": spec.label,
                 "cluster": spec.cluster, "contexts": spec.contexts, "continuation": spec.continuation, "group": spec.group}
        compiled = {k: compile_expression(v, f"{where}: field '{k}'") for k, v in names.items() if v}
        if spec.subtasks is not None:  # checked with the others: a broken one failed only where members were listed
            compile_expression(spec.subtasks.by, f"{where}: field 'subtasks.by'")
        return compiled

    def _make_item(self, row: dict[str, Any], origin: Origin, line: int) -> Item:
        exprs = self._expressions

        def value(name: str) -> Any:
            try:
                return exprs[name](row)
            except JINJA_ERRORS as exc:
                raise HarnessError(
                    f"{self.yaml_path}: field '{name}' ({getattr(self.spec, name)!r}) failed on {origin.at(line)}: "
                    f"{explain(exc, '')}. Fields in that row: {clip(', '.join(map(str, row)), 300)}."
                ) from None

        raw_id = value("id") if "id" in exprs else row.get("id", f"{origin.stem}:{line}")
        if raw_id is None or str(raw_id).strip() == "":
            where_id = f"field 'id' ({self.spec.id!r}) gave" if "id" in exprs else "the row's 'id' is"
            raise HarnessError(
                f"{self.yaml_path}: {where_id} {'null' if raw_id is None else 'empty'} on {origin.at(line)}; every item needs an id "
                "(give every row one, or none: ids are then '<file>:<line>', or set 'id:' in task.yaml)"
            )
        item_id = str(raw_id)
        choices = _choice_texts(value("choices"), f"{self.yaml_path}: field 'choices' ({self.spec.choices!r}) on {origin.at(line)}") \
            if "choices" in exprs else None
        raw_target = value("target")
        verbalizers = None
        gold = self.kind.gold
        if self.kind.choices == "verbalizers":
            # the choices are the labels; the target is a label name or an index into them
            choices = self.labels
            verbalizers = tuple(tuple(_as_list(words)) for words in (self.spec.verbalizers or {}).values())
        where = f"{self.yaml_path}: field 'target' ({self.spec.target!r}) on {origin.at(line)}"
        correct: tuple[int, ...] = ()
        if gold == "label":
            target: int | tuple[str, ...] = _label_index(raw_target, choices or (), self.label_codes, where)
        elif gold == "choices":
            correct = _correct_choices(raw_target, choices or (), self.spec.target_format, where)
            target = correct[0]
        else:
            target = _references(raw_target, where)
        if verbalizers and isinstance(target, int):
            default_label = (choices or ())[target]
        else:
            default_label = str(target) if len(correct) > 1 or self.spec.target_format == "labels" else str(raw_target)
        label = str(value("label")) if "label" in exprs else default_label
        def required(name: str) -> str | None:
            """A ``cluster:``/``group:`` value: None when the task declares none; an empty one is an error."""
            if name not in exprs:
                return None
            raw = value(name)
            if raw is None or str(raw) == "":
                raise HarnessError(
                    f"{self.yaml_path}: field '{name}' ({getattr(self.spec, name)!r}) gave no value on {origin.at(line)}; "
                    f"every item needs its {name} (e.g. the passage it is about)"
                )
            return str(raw)

        cluster, group = required("cluster"), required("group")
        contexts, continuation = self._per_choice_contexts(value, choices or (), origin, line) if "contexts" in exprs else (None, None)
        return Item(id=item_id, row=row, input=str(value("input")), target=target, choices=choices, label=label, verbalizers=verbalizers,
                    cluster=cluster, correct=correct if len(correct) > 1 else None, contexts=contexts, continuation=continuation,
                    group=group)

    def _per_choice_contexts(self, value: Any, choices: tuple[str, ...], origin: Origin, line: int) -> tuple[tuple[str, ...], str]:
        """``contexts:`` (a list, one string per choice) and ``continuation:`` (non-empty text) of one row."""
        raw = value("contexts")
        where = f"{self.yaml_path}: field 'contexts' ({self.spec.contexts!r}) on {origin.at(line)}"
        if not isinstance(raw, (list, tuple)):
            raise HarnessError(f"{where}: expected a list with one context per choice, got {type(raw).__name__} {shorten(raw, 60)}")
        if len(raw) != len(choices):
            raise HarnessError(f"{where}: gave {len(raw)} contexts for {len(choices)} choices {shorten(list(choices))}; they must pair up")
        if any(not isinstance(c, (str, int, float)) or isinstance(c, bool) for c in raw):
            raise HarnessError(f"{where}: every context must be text, got {[type(c).__name__ for c in raw]}")
        continuation = value("continuation")
        if not isinstance(continuation, (str, int, float)) or isinstance(continuation, bool) or not str(continuation).strip():
            raise HarnessError(
                f"{self.yaml_path}: field 'continuation' ({self.spec.continuation!r}) on {origin.at(line)}: gave "
                f"{shorten(continuation)}; it must be non-empty text (the part every choice's context is scored on)"
            )
        return tuple(str(c) for c in raw), str(continuation)


def class_label(task: Task, item: Item) -> str | None:
    """The class an item counts in for label distributions (``--sample``/``--limit`` warnings, ``label`` in
    ``--stratify``): the task's ``label:`` value when it declares one; for classification the gold label; for
    multiple choice the position of the correct choice ("0", "1"..., several joined by ","). None for generate tasks.
    """
    if not task.kind.has_choices:
        return None
    if task.spec.label is not None or task.kind.has_labels:
        return item.label
    return ",".join(str(i) for i in item.correct_choices) or item.label


MIN_CHOICES = 2


def _choice_texts(raw: Any, where: str) -> tuple[str, ...]:
    """An item's choices: a list of non-empty texts (or numbers), at least MIN_CHOICES of them distinct. A string is not a
    list of choices (it once made a one-choice item that always scored 1.00). Repeats are allowed beside two distinct
    choices (MMLU has rows with two equal options); a target naming a repeated text is refused (``_choice_index``)."""
    if not isinstance(raw, (list, tuple)):
        raise HarnessError(f"{where}: expected a list of choices, got {type(raw).__name__} {shorten(raw, 80)} (a "
                           "multiple-choice item needs a list, e.g. '{{ options }}' where the row holds [\"a\", \"b\", ...])")
    bad = [c for c in raw if isinstance(c, bool) or not isinstance(c, (str, int, float))]
    if bad:
        raise HarnessError(f"{where}: every choice must be text, got {type(bad[0]).__name__} {shorten(bad[0], 60)}")
    choices = tuple(str(c) for c in raw)
    for at, choice in enumerate(choices):
        if not choice.strip():
            raise HarnessError(f"{where}: choice {at} is empty; every choice needs text")
    distinct = len(set(choices))
    if distinct < MIN_CHOICES:
        repeat = f" ({len(choices)} given, all the same)" if len(choices) > 1 else ""
        raise HarnessError(f"{where}: gave {distinct} distinct choice{'s' * (distinct != 1)} {shorten(list(choices), 80)}{repeat}; "
                           f"a multiple-choice item needs at least {MIN_CHOICES} different choices")
    return choices


def _references(raw: Any, where: str) -> tuple[str, ...]:
    """A generate item's reference answers: a value or a list of them, none null (a missing answer in the data was
    once scored against the text 'None')."""
    references = _as_list(raw)
    if not references:
        raise HarnessError(f"{where}: target is an empty list; a generate item needs at least one reference answer")
    if any(r is None for r in references):
        what = "null" if raw is None else f"a list holding null ({shorten(references, 80)})"
        raise HarnessError(f"{where}: target is {what}; a generate item needs its reference answer (a missing value in the data?)")
    return tuple(str(r) for r in references)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _choice_index(raw: Any, choices: tuple[str, ...], where: str) -> int:
    """A multiple-choice target may be an index (int or digit string) or the text of a choice, never a boolean (True is
    not choice 1: a yes/no target belongs to ``target_format: labels`` or needs its choice's text)."""
    if isinstance(raw, bool):
        raise HarnessError(f"{where}: target is the boolean {str(raw).lower()}, not a choice index or one of the choices "
                           f"{shorten(list(choices), 120)}; give the index or the choice's text")
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().lstrip("-").isdigit()):
        index = int(raw)
        if 0 <= index < len(choices):
            return index
        raise HarnessError(f"{where}: target index {index} is out of range for {len(choices)} choices")
    if str(raw) in choices:
        if choices.count(str(raw)) > 1:
            raise HarnessError(f"{where}: target {shorten(raw, 80)} is the text of several choices {shorten(list(choices), 160)}; "
                               "give the index of the correct one")
        return choices.index(str(raw))
    raise HarnessError(f"{where}: target {shorten(raw, 80)} is neither a choice index nor one of the choices {shorten(list(choices), 160)}")


_FLAGS = {True: 1, False: 0, "1": 1, "0": 0, "true": 1, "false": 0}  # the ints 1/0 hash as True/False


def _flag(value: Any) -> int | None:
    """A 0/1 label (an int, a bool, or the strings '0', '1', 'true', 'false'); None for anything else."""
    if isinstance(value, str):
        return _FLAGS.get(value.strip().lower())
    if isinstance(value, (bool, int)):
        return _FLAGS.get(value)
    return None


def _correct_choices(raw: Any, choices: tuple[str, ...], target_format: str, where: str) -> tuple[int, ...]:
    """The correct choices of a multiple-choice item, in the task's order (the first is the item's ``target``).

    ``target_format: choice`` (default): one choice (index or text) or a list of them. ``labels``: one 0/1 flag
    per choice. The two never guess at each other: a list that only makes sense as flags (booleans, or 0/1 values
    with repeats) under the default format is an error that names ``target_format: labels``.
    """
    if target_format == "labels":
        if not isinstance(raw, (list, tuple)):
            raise HarnessError(f"{where}: 'target_format: labels' needs one 0/1 flag per choice (a list of {len(choices)}), got {shorten(raw, 80)}")
        if len(raw) != len(choices):
            raise HarnessError(f"{where}: {len(raw)} labels for {len(choices)} choices; 'target_format: labels' needs one 0/1 flag per choice")
        flags = [_flag(v) for v in raw]
        if None in flags:
            bad = raw[flags.index(None)]
            raise HarnessError(f"{where}: label {shorten(bad, 60)} is not 0/1 (or true/false); 'target_format: labels' needs one 0/1 flag per choice")
        correct = tuple(i for i, f in enumerate(flags) if f)
        if not correct:
            raise HarnessError(f"{where}: no choice is labelled 1 (labels {shorten(list(raw), 120)}); an item needs at least one correct choice")
        return correct
    if not isinstance(raw, (list, tuple)):
        return (_choice_index(raw, choices, where),)
    if not raw:
        raise HarnessError(f"{where}: target is an empty list; an item needs at least one correct choice")
    flags = [_flag(v) for v in raw]
    if any(isinstance(v, bool) for v in raw) or (None not in flags and len(set(flags)) < len(flags)):
        raise HarnessError(
            f"{where}: target {shorten(list(raw), 120)} looks like one 0/1 label per choice, not a list of correct choices; "
            "add 'target_format: labels' to task.yaml (a list target otherwise names the correct choices by index or text)"
        )
    indices = tuple(_choice_index(r, choices, where) for r in raw)
    for at, index in enumerate(indices):
        if index in indices[:at]:
            raise HarnessError(f"{where}: choice {index} ({shorten(choices[index], 60)}) is listed twice in target {shorten(list(raw), 120)}")
    return indices


_CODE = re.compile(r"-?[0-9]+")


def _is_code_keyed(verbalizers: dict[str, Any]) -> bool:
    """Whether every verbalizer key is an integer (``100: politics`` or ``"100": politics``): then the labels are
    codes, and an integer target is a code, never an index (see ``_label_index``)."""
    return bool(verbalizers) and all(_CODE.fullmatch(str(key)) for key in verbalizers)


def _label_index(raw: Any, labels: tuple[str, ...], codes: dict[int, int] | None, where: str) -> int:
    """A classification target: a label name or an index into the labels; with verbalizers keyed by codes, a code."""
    if isinstance(raw, (list, tuple)):
        raise HarnessError(f"{where}: a classification item has one gold label, got {shorten(list(raw), 120)} "
                           "(several correct choices are for multiple_choice tasks)")
    if codes is None:
        return _choice_index(raw, labels, where)
    if isinstance(raw, bool):
        raise HarnessError(f"{where}: target is the boolean {str(raw).lower()}, not a label code ({_codes_text(codes)})")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int) or (isinstance(raw, str) and _CODE.fullmatch(raw.strip())):
        code = int(raw)
        if code in codes:
            return codes[code]
        nearest = min(codes, key=lambda c: (abs(c - code), c))
        raise HarnessError(
            f"{where}: label code {code} is not a key of 'verbalizers' (codes: {_codes_text(codes)}). Did you mean {nearest}? "
            "(verbalizers keyed by integers make an integer target a code, not an index)"
        )
    raise HarnessError(f"{where}: target {shorten(raw, 80)} is not a label code; 'verbalizers' is keyed by codes ({_codes_text(codes)})")


def _codes_text(codes: dict[int, int]) -> str:
    ordered = sorted(codes)
    if len(ordered) > 3 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}..{ordered[-1]}"
    return ", ".join(str(c) for c in ordered[:12]) + (", ..." if len(ordered) > 12 else "")


def _check_unique_ids(items: list[Item], lines: list[int], origin: Origin) -> None:
    """Item ids are the pairing key of every comparison: two rows with one id would overwrite each other's results."""
    seen: dict[str, int] = {}
    for line, item in zip(lines, items):
        if item.id in seen:
            raise HarnessError(
                f"{origin.label}: item id {shorten(item.id, 80)} appears on {origin.unit} {seen[item.id]} and {origin.unit} {line}; "
                "ids must be unique (set 'id:' in task.yaml to an expression that is)"
            )
        seen[item.id] = line


def env_paths(variable: str) -> list[Path]:
    """Folders listed in an environment variable (os.pathsep-separated)."""
    return [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p]


def data_dirs_from_env() -> tuple[Path, ...]:
    return tuple(env_paths(DATA_DIR_ENV))


def search_dirs(variable: str, folder: str) -> list[Path]:
    """$variable's folders, then ./<folder> and the bundled <folder> (harness.core.paths), without repeats."""
    dirs = env_paths(variable)
    for candidate in (Path.cwd() / folder, bundled_dir(folder)):
        if candidate.is_dir() and candidate.resolve() not in [d.resolve() for d in dirs]:
            dirs.append(candidate)
    return dirs


def resolve_data_path(value: str, folder: Path, data_dirs: Iterable[Path], where: str, source: str = "") -> Path:
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [folder / path, *(Path(d) / path for d in data_dirs)]
    for candidate in candidates:
        if is_data(candidate):
            return candidate
    folders = [c for c in candidates if c.is_dir()]
    if folders:
        raise HarnessError(f"{where}: '{value}' is a folder ({folders[0]}), not a data file, nor a folder written by datasets' "
                           "save_to_disk; name a .jsonl/.json/.csv/.tsv/.parquet file in it")
    tried = ", ".join(str(c) for c in candidates)
    hint = f" To get it: {source.strip()}" if source.strip() else ""
    raise HarnessError(
        f"{where}: data file '{value}' not found (looked in: {tried}).{_sibling_hint(candidates)} Put the file there, or point "
        f"--data-dir (or ${DATA_DIR_ENV}, or 'data_dirs' in the experiment file) at the folder that holds it.{hint}"
    )


def _sibling_hint(candidates: list[Path]) -> str:
    """' Did you mean ...?' among the files beside the places a data file was looked for (test.jsonl for tests.jsonl)."""
    for candidate in candidates:
        try:
            siblings = [p.name for p in candidate.parent.iterdir() if p.name != "task.yaml" and not p.name.startswith(".")][:1000]
        except OSError:
            continue
        hint = did_you_mean(candidate.name, siblings)
        if hint:
            return hint
    return ""


def load_task(path: Path, data_dirs: Iterable[Path] = ()) -> Task:
    """Load and validate ``task.yaml`` (or a folder containing one). Data is read lazily."""
    yaml_path = path / "task.yaml" if path.is_dir() else path
    spec = validate(TaskSpec, read_yaml_mapping(yaml_path, "task"), yaml_path, "task")
    dirs = (*data_dirs, *data_dirs_from_env())
    return Task(spec=spec, folder=yaml_path.parent, yaml_path=yaml_path, data_dirs=tuple(dirs))


def default_task_dirs() -> list[Path]:
    return search_dirs(TASKS_DIR_ENV, "tasks")


def discover_tasks(extra_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Task name -> task.yaml for every ``<dir>/<name>/task.yaml`` (first found wins)."""
    found: dict[str, Path] = {}
    for folder in [*extra_dirs, *default_task_dirs()]:
        if not Path(folder).is_dir():
            raise HarnessError(f"tasks directory '{folder}' does not exist")
        for yaml_path in sorted(Path(folder).glob("*/task.yaml")):
            name = _peek_name(yaml_path)
            found.setdefault(name, yaml_path)
    return found


def _peek_name(yaml_path: Path) -> str:
    """The task's name without full validation, so one broken task does not hide the others."""
    try:
        raw = load_yaml(yaml_path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            return raw["name"]
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):  # load_task names the problem
        pass
    return yaml_path.parent.name


def _find_member(name: str, known: dict[str, Path], data_dirs: Iterable[Path]) -> Task | None:
    """``mmlu_anatomy``: the member 'anatomy' of a group task ``mmlu`` (see SubtaskSpec)."""
    for group_name, path in sorted(known.items(), key=lambda kv: -len(kv[0])):
        if not name.startswith(f"{group_name}_"):
            continue
        group = load_task(path, data_dirs)
        key = name[len(group_name) + 1 :]
        if group.spec.subtasks is not None:
            keys = group.subtask_keys()
            if key in keys:
                return group.member(key)
            raise HarnessError(
                f"task group '{group_name}' has no member '{key}'.{did_you_mean(key, keys)} Members: {', '.join(keys)}."
            )
    return None


def find_task(name_or_path: str, extra_dirs: Iterable[Path] = (), data_dirs: Iterable[Path] = ()) -> Task:
    """A task by name (searched in the task dirs) or by path to its folder / YAML file."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
        raise HarnessError(f"{path}: a task is a folder holding task.yaml (or the task.yaml itself), not a {path.suffix or 'plain'} file; "
                           f"give the folder{f' {path.parent}' if (path.parent / 'task.yaml').is_file() else ''} or a task name")
    if path.exists():
        return load_task(path, data_dirs)
    known = discover_tasks(extra_dirs)
    if name_or_path not in known:
        member = _find_member(name_or_path, known, data_dirs)
        if member is not None:
            return member
        raise HarnessError(
            f"unknown task '{name_or_path}'.{did_you_mean(name_or_path, known)} "
            f"Known tasks: {', '.join(sorted(known)) or '(none)'}; or give a path to a task folder."
        )
    return load_task(known[name_or_path], data_dirs)
