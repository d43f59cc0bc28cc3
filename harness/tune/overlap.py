"""Overlap between what a tuned model was trained or selected on and what is about to be scored.

A ``harness tune`` card (``tune_card.json`` in the ``--adapter`` folder, or in the ``hf:`` folder
of a ``--full`` model) records, per task, the ids and content hashes of the training items and of
the selection items (those that chose the checkpoint: early stopping, best step). Scoring any
of them in an A/B measures memory, not skill; an audit saw +10.0 points on 20 selection items
against +1.25 on the other 80. So, against the items an A/B scores:

- **id overlap**: a scored item of task T whose id is a training or selection item of T;
- **content overlap**: a scored item (any task) whose content hash (``harness.tune.train.content_hash``:
  input and choices, not id or target) equals a training or selection item's;
- **near-duplicates** (warnings only): after ``normalise`` (NFKC, lowercase, every run of
  non-alphanumeric characters one space) either the texts are equal, or, as in the GPT-3 and
  Llama 2 contamination studies, they share word n-grams: with ``NGRAM`` = 8 words, the share of
  the *shorter* text's 8-grams found in the other is at least ``NEAR_DUPLICATE`` = 0.5. A text
  shorter than 8 words counts only if it appears whole inside the other (and has at least
  ``MIN_CONTAINED`` = 4 words; shorter ones only when equal). Near-duplicates are compared on the
  items' inputs (choices are left out: shared answer options such as yes/no are not a copy).

``check_overlap(spec, tuned, allow=...)`` (an experiment about to run) and
``check_overlap_runs(store, base_run, tuned_run, allow=...)`` (stored runs) raise a HarnessError
that names the counts and items when id or content overlap is found, unless ``allow`` (the
``--allow-overlap`` flag), in which case the report is ``flagged``; near-duplicates never raise.
Cards written before these records existed are read as what that code did: selection on the
first ``eval_limit`` items of the validation split, else of ``test``, training on all train items.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.backends import ModelSpec
from harness.core.errors import HarnessError
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tasks.task import Item, Task, find_task
from harness.tune.card import CARD_JSON, TuneCard, load_card
from harness.tune.train import content_hash

NGRAM = 8  # words per n-gram of the near-duplicate test
NEAR_DUPLICATE = 0.5  # share of the shorter text's n-grams found in the other
MIN_CONTAINED = 4  # a text shorter than NGRAM words must have at least this many to count as contained in another
EXAMPLES = 5  # item ids named per overlap line
ROLES = ("selection", "training")


def normalise(text: str) -> str:
    """NFKC, lowercase, every run of characters that are not letters or digits one space, stripped."""
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _grams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def near_duplicate_score(a: str, b: str, n: int = NGRAM) -> float:
    """1.0 for texts equal once normalised; else the share of the shorter text's ``n``-grams found in
    the longer one; a text shorter than ``n`` words scores 1.0 when it appears whole in the other
    (and has at least MIN_CONTAINED words), else 0.0."""
    ta, tb = normalise(a).split(), normalise(b).split()
    if not ta or not tb:
        return 0.0
    if ta == tb:
        return 1.0
    short, long = sorted((ta, tb), key=len)
    if len(short) < n:
        return 1.0 if len(short) >= MIN_CONTAINED and tuple(short) in _grams(long, len(short)) else 0.0
    mine = _grams(short, n)
    return len(mine & _grams(long, n)) / len(mine)


@dataclass(frozen=True)
class Entry:
    """An item on either side: its task, id, content hash and normalised input (None when unknown)."""

    task: str
    id: str
    hash: str | None = None
    text: str | None = None

    @property
    def name(self) -> str:
        return f"{self.task}/{self.id}"


def entry(task: str, item: Item) -> Entry:
    return Entry(task, item.id, content_hash(item), normalise(item.input))


@dataclass(frozen=True)
class Overlap:
    """Scored items of one task that are training or selection items (by id, content or near-duplicate)."""

    role: str  # selection | training
    match: str  # id | content | near-duplicate
    task: str  # the scored task
    count: int
    scored: int  # scored items of that task
    examples: tuple[tuple[str, str], ...]  # (scored item id, the tuned item it matches as task/id), first EXAMPLES
    ids: tuple[str, ...] = ()  # every matched scored item id (of ``task``)

    @property
    def blocking(self) -> bool:
        return self.match != "near-duplicate"

    def line(self) -> str:
        what = {"id": "have the ids of", "content": "have, under other ids, the same content (input and choices) as",
                "near-duplicate": f"are near-duplicates (equal once normalised, or >= {NEAR_DUPLICATE:.0%} shared {NGRAM}-grams) of"}
        used = ("the items that selected the tuned checkpoint (early stopping, best step)" if self.role == "selection"
                else "training items")
        shown = ", ".join(s if self.match == "id" else f"{s} (~ {t})" for s, t in self.examples)
        more = f" and {self.count - len(self.examples)} more" if self.count > len(self.examples) else ""
        return f"{self.task}: {self.count} of {self.scored} scored items {what[self.match]} {used}: {shown}{more}"


@dataclass(frozen=True)
class OverlapReport:
    """What the tuned model saw against what is scored; ``lines()`` for people, ``to_dict()`` for --json."""

    tuned: str  # the tuned model's label
    card: str | None  # the folder holding its tune card; None: nothing to check against
    scored: int  # distinct (task, item) scored; 0 when not checked
    overlaps: tuple[Overlap, ...] = ()
    notes: tuple[str, ...] = ()
    allowed: bool = False  # --allow-overlap was given
    selection: tuple[str, ...] = ()  # per task, how the card says its checkpoint was selected ("capitals: train holdout: 8 of 40 ...")

    @property
    def blocking(self) -> tuple[Overlap, ...]:
        return tuple(o for o in self.overlaps if o.blocking)

    @property
    def near_duplicates(self) -> tuple[Overlap, ...]:
        return tuple(o for o in self.overlaps if not o.blocking)

    @property
    def overlapping(self) -> int:
        """Distinct scored items with an id or content overlap."""
        return len({(o.task, i) for o in self.blocking for i in o.ids})

    @property
    def flagged(self) -> bool:
        """Scored items overlap what the model was trained or selected on, and --allow-overlap let it proceed."""
        return bool(self.blocking)

    def lines(self) -> list[str]:
        """Everything, in reading order, each line prefixed by what it is (OVERLAP / warning / note)."""
        flags = self.flag_lines()
        return [*self._checked(), *flags[: len(self.blocking)], *(f"warning: {w}" for w in self.warning_lines()),
                *flags[len(self.blocking):], *(f"note: {n}" for n in self.notes)]

    def flag_lines(self) -> list[str]:
        """Loud: scored items the tuned model was trained or selected on (the A/B is then suspect)."""
        out = [f"OVERLAP: {o.line()}" for o in self.blocking]
        if self.blocking and self.allowed:
            out.append(f"proceeding with --allow-overlap: this A/B is flagged, the tuned model was trained or selected on "
                       f"{self.overlapping} of the {self.scored} scored items; its difference from the base there is not evidence "
                       "of generalisation")
        return out

    def warning_lines(self) -> list[str]:
        """Near-duplicates of training or selection items among the scored ones."""
        return [o.line() for o in self.near_duplicates]

    def note_lines(self) -> list[str]:
        """What was checked (and found clean), then the notes (no card, inferred selection ...)."""
        return [*self._checked(), *self.notes]

    def _checked(self) -> list[str]:
        if self.card is None or self.blocking:
            return []
        how = f"; selected on {'; '.join(self.selection)}" if self.selection else ""
        return [f"overlap check ({self.tuned}, card in {self.card}): none of its training or selection items is among "
                f"the {self.scored} scored items (by id or content){how}"]

    def error_message(self) -> str:
        body = "\n".join(f"  - {o.line()}" for o in self.blocking)
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        return (f"harness ab: the tuned model {self.tuned} was trained or selected on items it would now be scored on "
                f"(card: {self.card}):\n{body}{notes}\n"
                "Evaluate on other items: another split (--split) or items it never saw; the card's `training` and `selection` list "
                "them. Or pass --allow-overlap to proceed anyway; the result is then flagged as overlapping.")

    def to_dict(self) -> dict[str, Any]:
        return {"tuned": self.tuned, "card": self.card, "scored": self.scored, "flagged": self.flagged, "allowed": self.allowed,
                "overlapping": self.overlapping,
                "overlaps": [{"role": o.role, "match": o.match, "task": o.task, "count": o.count, "scored": o.scored,
                              "blocking": o.blocking, "examples": [list(e) for e in o.examples], "item_ids": list(o.ids)}
                             for o in self.overlaps],
                "notes": list(self.notes), "lines": self.lines()}


# -- entry points ---------------------------------------------------------------------------------
def check_overlap(spec: Any, tuned: ModelSpec, *, allow: bool = False) -> OverlapReport:
    """Overlap of the tuned model's training and selection items with the items ``spec``
    (a runner.ExperimentSpec) scores. Raises HarnessError on id or content overlap unless ``allow``."""
    card, notes = card_for_model(tuned)
    if card is None:
        return OverlapReport(tuned.label, None, 0, notes=tuple(notes), allowed=allow)
    scored: dict[tuple[str, str], Entry] = {}
    for cell in plan(spec):
        for item in cell.items:
            scored.setdefault((cell.task.name, item.id), entry(cell.task.name, item))
    return _finish(tuned.label, card, list(scored.values()), notes, (spec.tasks_dirs, spec.data_dirs), allow)


def check_overlap_runs(store: Store, base_run: str | None, tuned_run: str, *, tuned_label: str | None = None,
                       allow: bool = False) -> OverlapReport:
    """The same for stored runs (``harness ab --base-run/--tuned-run``): the scored items are the
    (task, item id) pairs both runs stored (only the tuned run's with ``base_run`` None); the tuned
    model is the one of ``tuned_run`` (``tuned_label`` picks it among several) whose folder holds a
    card. Content and near-duplicate checks re-read the items from the run's tasks; when they can no
    longer be read, ids are still compared and a note says what was skipped."""
    config = store.run_config(tuned_run)
    notes: list[str] = []
    models: list[ModelSpec] = []
    for raw in config.get("spec", {}).get("models", []):
        try:
            models.append(ModelSpec.model_validate(raw))
        except ValidationError:  # a stored model this install cannot read (its backend plugin is gone): no card to look for
            known = raw if isinstance(raw, dict) else {}
            name = known.get("name") or f"{known.get('backend')}:{known.get('model')}"
            notes.append(f"model {name}: this install cannot read its entry (backend {known.get('backend')} not installed?), "
                         "so it was not checked for a tuning card")
    if tuned_label is not None:
        models = [m for m in models if m.label == tuned_label]
    card, label = None, tuned_label or (models[0].label if models else "?")
    for model in models:
        card, why = card_for_model(model)
        if card is not None:
            label, notes = model.label, []
            break
        notes += why
    if card is None:
        return OverlapReport(label, None, 0, notes=tuple(notes) or (f"run {tuned_run} names no tuned model",), allowed=allow)

    def keys(run: str) -> set[tuple[str, str]]:
        tasks = {c.cell_id: c.task for c in store.cells([run])}
        return {(tasks[r.cell_id], r.item_id) for r in store.scores([run])}

    wanted = keys(tuned_run)
    if base_run is not None and base_run != tuned_run:
        wanted &= keys(base_run)
    scored = {k: Entry(*k) for k in wanted}
    spec = config.get("spec", {})
    try:
        for cell in plan(ExperimentSpec.model_validate(spec)):
            for item in cell.items:
                if (cell.task.name, item.id) in scored:
                    scored[(cell.task.name, item.id)] = entry(cell.task.name, item)
    except (HarnessError, ValueError, OSError) as exc:
        notes.append(f"content and near-duplicate checks skipped: the scored items' tasks could not be read again ({_short(exc)}); "
                     "item ids were compared")
    dirs = (spec.get("tasks_dirs", []), spec.get("data_dirs", []))
    return _finish(label, card, sorted(scored.values(), key=lambda e: (e.task, e.id)), notes, dirs, allow)


def card_for_model(model: ModelSpec) -> tuple[TuneCard | None, list[str]]:
    """The tune card of a tuned model (its adapter folder, or its hf model folder), and why not when none."""
    where = [w for w in (model.adapter, model.model if model.backend == "hf" else None) if w and Path(w).expanduser().is_dir()]
    for folder in where:
        card = load_card(Path(folder).expanduser())
        if card is not None:
            return card, []
    if where:
        return None, [f"{model.label}: no {CARD_JSON} in {', '.join(where)}; what it was trained or selected on is unknown, "
                      "overlap not checked"]
    return None, [f"{model.label} is not a `harness tune` output folder (no {CARD_JSON}); overlap not checked"]


# -- the comparison -------------------------------------------------------------------------------
def _finish(label: str, card: TuneCard, scored: list[Entry], notes: list[str], dirs: tuple[Sequence[str], Sequence[str]],
            allow: bool) -> OverlapReport:
    tuned, more = tuned_items(card, dirs)
    selection = card.data.get("selection") or {}
    how = tuple(f"{task}: {entry.get('how', entry.get('split', '?'))}" for task, entry in sorted(selection.items()) if isinstance(entry, dict))
    report = OverlapReport(label, str(card.folder), len(scored), tuple(find_overlaps(tuned, scored)), tuple(dict.fromkeys(notes + more)),
                           allow, how)
    if report.blocking and not allow:
        raise HarnessError(report.error_message())
    return report


def find_overlaps(tuned: dict[str, list[Entry]], scored: Sequence[Entry]) -> list[Overlap]:
    """Per role (selection, training) and scored task: id, content and near-duplicate overlaps."""
    by_task: dict[str, list[Entry]] = defaultdict(list)
    for s in scored:
        by_task[s.task].append(s)
    out: list[Overlap] = []
    for role in ROLES:
        items = tuned.get(role, [])
        ids = {(t.task, t.id): t for t in items}
        hashes: dict[str, Entry] = {}
        for t in items:
            if t.hash:
                hashes.setdefault(t.hash, t)
        near = _NearIndex([t for t in items if t.text])
        for task, group in by_task.items():
            hits: dict[str, list[tuple[str, str]]] = {"id": [], "content": [], "near-duplicate": []}
            for s in group:
                exact = False
                if (s.task, s.id) in ids:
                    hits["id"].append((s.id, ids[(s.task, s.id)].name))
                    exact = True
                elif s.hash and s.hash in hashes:  # an id match is not repeated as a content match
                    hits["content"].append((s.id, hashes[s.hash].name))
                    exact = True
                if not exact and s.text and (twin := near.find(s.text)) is not None:
                    hits["near-duplicate"].append((s.id, twin.name))
            out += [Overlap(role, match, task, len(h), len(group), tuple(h[:EXAMPLES]), tuple(s for s, _ in h))
                    for match, h in hits.items() if h]
    return out


class _NearIndex:
    """``near_duplicate_score`` >= NEAR_DUPLICATE against many items at once, through n-gram indexes."""

    def __init__(self, items: Sequence[Entry]) -> None:
        self.items = list(items)
        self.tokens = [(t.text or "").split() for t in self.items]
        self.exact = {tuple(tok): i for i, tok in reversed(list(enumerate(self.tokens))) if tok}
        self.grams: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.sizes: dict[int, int] = {}
        self.short: dict[int, dict[tuple[str, ...], int]] = defaultdict(dict)  # length -> whole short text -> item
        for i, tok in enumerate(self.tokens):
            if len(tok) >= NGRAM:
                mine = _grams(tok, NGRAM)
                self.sizes[i] = len(mine)
                for g in mine:
                    self.grams[g].append(i)
            elif len(tok) >= MIN_CONTAINED:
                self.short[len(tok)].setdefault(tuple(tok), i)
        self._windows: dict[int, dict[tuple[str, ...], int]] = {}

    def _window(self, n: int) -> dict[tuple[str, ...], int]:
        """Every n-word window of every item (built once per length, for short scored texts)."""
        if n not in self._windows:
            table: dict[tuple[str, ...], int] = {}
            for i, tok in enumerate(self.tokens):
                for g in _grams(tok, n):
                    table.setdefault(g, i)
            self._windows[n] = table
        return self._windows[n]

    def find(self, text: str) -> Entry | None:
        tok = text.split()
        if not tok:
            return None
        if tuple(tok) in self.exact:
            return self.items[self.exact[tuple(tok)]]
        if len(tok) < NGRAM:  # a short scored text: contained whole in an item
            if len(tok) >= MIN_CONTAINED and (i := self._window(len(tok)).get(tuple(tok))) is not None:
                return self.items[i]
            return None
        for n, table in self.short.items():  # a short item contained whole in the scored text
            for g in _grams(tok, n):
                if g in table:
                    return self.items[table[g]]
        mine = _grams(tok, NGRAM)
        shared: dict[int, int] = defaultdict(int)
        for g in mine:
            for i in self.grams.get(g, ()):
                shared[i] += 1
        best = max(shared, key=lambda i: (shared[i] / min(len(mine), self.sizes[i]), -i), default=None)
        if best is not None and shared[best] / min(len(mine), self.sizes[best]) >= NEAR_DUPLICATE:
            return self.items[best]
        return None


# -- what the tuned model saw ---------------------------------------------------------------------
def tuned_items(card: TuneCard, fallback_dirs: tuple[Sequence[str], Sequence[str]] = ((), ())) -> tuple[dict[str, list[Entry]], list[str]]:
    """Role (selection, training) -> the card's items (id, content hash, normalised input when the
    task data can be read), and notes on anything inferred or missing."""
    data, config = card.data, card.data.get("config", {})
    dirs = [(config.get("tasks_dirs", []), config.get("data_dirs", [])), fallback_dirs]
    notes: list[str] = []
    if "training" not in data or "selection" not in data:
        return _legacy_items(card, dirs, notes), notes
    out: dict[str, list[Entry]] = {role: [] for role in ROLES}
    for role in ROLES:
        for task_name, record in data[role].items():
            ids, hashes = record.get("item_ids", []), record.get("content_sha256", [])
            split = record.get("source_split") or record.get("split")
            if role == "training" or str(split).endswith(" holdout"):
                split = record.get("source_split") or config.get("train_split", "train")
            items = _task_items(task_name, split, dirs, notes, role)
            changed = 0
            for k, item_id in enumerate(ids):
                recorded = hashes[k] if k < len(hashes) else None
                item = items.get(item_id)
                if item is not None and recorded is not None and content_hash(item) != recorded:
                    changed += 1
                out[role].append(Entry(task_name, item_id, recorded, normalise(item.input) if item is not None else None))
            missing = sum(1 for i in ids if i not in items) if items else 0
            if changed or missing:
                notes.append(f"{task_name}: {changed + missing} of the card's {len(ids)} {role} items differ from or are missing in "
                             f"the task's '{split}' data now (changed since tuning?); the card's ids and hashes were used")
    return out, notes


def _legacy_items(card: TuneCard, dirs: list[tuple[Sequence[str], Sequence[str]]], notes: list[str]) -> dict[str, list[Entry]]:
    """A card from before selection records: what that code did (validation, else test; first eval_limit items)."""
    config = card.data.get("config", {})
    train_split, wanted, limit = config.get("train_split", "train"), config.get("eval_split", "validation"), config.get("eval_limit")
    out: dict[str, list[Entry]] = {role: [] for role in ROLES}
    for name in config.get("tasks", card.data.get("tasks", [])):
        task = _find(name, dirs, notes)
        if task is None:
            continue
        split = wanted if task.has_split(wanted) else "test"
        chosen = task.items(split)[:limit] if task.has_split(split) else []
        trained = task.items(train_split) if task.has_split(train_split) else []
        out["selection"] += [entry(name, i) for i in chosen]
        out["training"] += [entry(name, i) for i in trained]
        notes.append(f"{name}: the card predates selection records; inferred what that version did: selection on the first "
                     f"{len(chosen)} '{split}' items, training on all {len(trained)} '{train_split}' items")
    return out


def _find(name: str, dirs: Iterable[tuple[Sequence[str], Sequence[str]]], notes: list[str]) -> Task | None:
    errors = []
    for tasks_dirs, data_dirs in [*dirs, ((), ())]:
        try:
            return find_task(name, [Path(d) for d in tasks_dirs if Path(d).is_dir()], [Path(d) for d in data_dirs])
        except HarnessError as exc:
            errors.append(exc)
    notes.append(f"{name}: task not found ({_short(errors[-1])}); its items' content could not be checked")
    return None


def _task_items(name: str, split: str | None, dirs: list[tuple[Sequence[str], Sequence[str]]], notes: list[str], role: str) -> dict[str, Item]:
    task = _find(name, dirs, notes)
    if task is None or not split:
        return {}
    try:
        return {i.id: i for i in task.items(split)}
    except (HarnessError, OSError) as exc:
        notes.append(f"{name}: the {role} items' '{split}' data could not be read ({_short(exc)}); near-duplicate checks skipped for them")
        return {}


def _short(exc: BaseException, width: int = 160) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = ["EXAMPLES", "MIN_CONTAINED", "NEAR_DUPLICATE", "NGRAM", "Entry", "Overlap", "OverlapReport", "card_for_model",
           "check_overlap", "check_overlap_runs", "entry", "find_overlaps", "near_duplicate_score", "normalise", "tuned_items"]
