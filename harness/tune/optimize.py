r"""``harness optimize TASK --prompt START``: search prompts on one part of the items, confirm the winner on the other.

1. **Items.** The task's evaluated items (after ``--limit``/``--sample``) are split by a seeded hash into a
   *search* split (``search_share`` of them) and a *held-out* confirmation split: items (or, when the task
   declares ``cluster:``, whole clusters) are ranked by ``sha256("<seed>\\0optimize\\0<cluster or id>")`` and the
   first ``round(share x units)`` go to the search. The two are disjoint and fixed by the seed.
2. **Candidates** (harness/tune/proposers.py): the grammar (formats x instructions x shots x selectors) or a
   model's instruction rewrites, each checked to render on the search items before use.
3. **Search.** START and the candidates are raced with ``harness run --until-decided``'s machinery
   (harness/runner/racing.py) on the search split only, in a run of its own. The few-shot pool loses the held-out
   items too (for a task whose pool is its evaluated split), so no held-out item is seen in the search, not even as
   a demonstration. The winner is the race's winner, or the best search mean among its survivors (START on a tie).
4. **Confirmation.** START and the winner are evaluated on the held-out split (a second run) and ONE pre-registered
   paired test, winner − START on the item pairs, decides: the engine ``compare`` uses for a pair
   (``harness.stats.paired.compare_pairing``: Tango's score interval for 0/1 scores, the bootstrap-t for continuous
   ones, clusters resampled whole) at ``alpha``. Verdict: better (p < alpha, winner ahead), worse (p < alpha,
   START ahead) or not shown better.

The held-out split is never evaluated during the search: its items are in no search cell, so no request for
them is looked up in the cache, sent or stored before the confirmation. What is reported is the confirmation;
the winner's search score is reported only as optimistic (it was selected on those items).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis.summaries import summarize
from harness.backends import Backend, ModelSpec, backend_class, parse_model
from harness.core.errors import HarnessError, clip
from harness.core.files import write_atomic
from harness.core.progress import progress_bar
from harness.core.redaction import redact_text
from harness.prompts.template import PromptTemplate, load_prompt
from harness.requests import GenerateRequest
from harness.runner.evaluate import CacheCounts, CellEvaluator, resolve, stored_cell
from harness.runner.execute import announce
from harness.runner.planning import Cell, check_renders, plan
from harness.runner.provenance import config_snapshot, model_identities, stable_hash, versions
from harness.runner.racing import race_metric, race_tasks
from harness.runner.spec import ExperimentSpec, RaceSpec
from harness.stats.paired import Kind, compare_pairing, pair
from harness.store import Store, StoredRace, export_run
from harness.tasks.task import Item
from harness.tune.proposers import Candidate, Proposals, grammar_candidates, model_candidates, proposal_requests, settings

OPTIMISTIC = "search score (optimistic: selected on these items)"


@dataclass(frozen=True)
class OptimizeSpec:
    """What ``harness optimize`` was asked: the experiment (one task, START as its prompt, one model, the subset,
    the seed, the folders) and the search's own settings."""

    experiment: ExperimentSpec
    start: str
    shots: tuple[int, ...] = (0,)
    selectors: tuple[str, ...] = ("first_k",)
    proposer: str = "grammar"  # or BACKEND:MODEL
    k: int = 8
    instructions: tuple[str, ...] = ()
    search_share: float = 0.6
    alpha: float = 0.05
    round: int = 25
    output: Path = Path("optimized")

    def check(self) -> None:
        if not 0 < self.search_share < 1:
            raise HarnessError(f"--search-share {self.search_share:g}: give the share of the items searched on, strictly between 0 and 1 "
                               "(e.g. 0.6: 60% searched, 40% held out for the confirmation)")
        if self.k < 1:
            raise HarnessError(f"-k {self.k}: give the number of candidates to propose, at least 1")
        if not 0 < self.alpha < 1:
            raise HarnessError(f"--alpha {self.alpha:g}: give an error probability strictly between 0 and 1, e.g. 0.05")
        if self.round < 1:
            raise HarnessError(f"--round {self.round}: give the items per cell per round, at least 1")
        if any(s < 0 for s in self.shots) or not self.shots:
            raise HarnessError("--shots: give shot counts >= 0, e.g. --shots 0 3")


@dataclass(frozen=True)
class Split:
    seed: int
    share: float
    search: tuple[Item, ...]
    heldout: tuple[Item, ...]

    def key(self) -> str:
        """A short hash of both splits' ids: part of every optimize cell's id and of each phase's run identity."""
        payload = json.dumps([self.seed, self.share, [i.id for i in self.search], [i.id for i in self.heldout]])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SearchEntry:
    """One raced cell: START or a candidate, where the race left it and its (optimistic) search mean."""

    name: str
    origin: str
    shots: int
    selector: str
    cell_id: str
    status: str
    round: int | None
    items: int
    mean: float | None
    beaten_by: str | None
    start: bool = False


@dataclass(frozen=True)
class Confirmation:
    """The pre-registered paired test on the held-out items: winner − START."""

    n: int
    pairs: tuple[str, ...]  # the paired item ids
    start_mean: float
    winner_mean: float
    difference: float
    low: float
    high: float
    confidence: float
    p_value: float
    test: str
    alpha: float
    verdict: str  # better | not shown better | worse
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizeReport:
    task: str
    metric: str
    higher_is_better: bool
    start: str
    start_setting: tuple[int, str]
    proposer: str
    split: Split
    proposals: Proposals
    entries: tuple[SearchEntry, ...]
    race: StoredRace
    search_run: str
    search_requests: int
    search_sent: int
    search_cache_hits: int
    winner: SearchEntry
    confirm_run: str | None = None
    confirmation: Confirmation | None = None
    written: Path | None = None
    written_name: str | None = None
    run_command: str | None = None

    @property
    def winner_is_start(self) -> bool:
        return self.winner.start

    def to_dict(self) -> dict[str, Any]:
        c = self.confirmation
        return {
            "task": self.task, "metric": self.metric, "higher_is_better": self.higher_is_better, "start": self.start,
            "start_shots": self.start_setting[0], "start_selector": self.start_setting[1], "proposer": self.proposer,
            "split": {"seed": self.split.seed, "search_share": self.split.share, "search_items": len(self.split.search),
                      "heldout_items": len(self.split.heldout), "key": self.split.key()},
            "proposals": {"proposed": self.proposals.proposed, "kept": len(self.proposals.candidates), "dropped": self.proposals.dropped,
                          "examples": list(self.proposals.examples)},
            "search": {"run_id": self.search_run, "reason": self.race.reason, "rounds": self.race.rounds, "evaluations": self.race.evaluations,
                       "requests": self.search_requests, "sent_to_model": self.search_sent, "cache_hits": self.search_cache_hits,
                       "tokens": self.race.tokens, "alpha": self.race.alpha, "guarantee": self.race.guarantee,
                       "cells": [{"name": e.name, "origin": e.origin, "shots": e.shots, "selector": e.selector, "cell_id": e.cell_id,
                                  "status": e.status, "round": e.round, "items": e.items, "search_mean": e.mean, "beaten_by": e.beaten_by,
                                  "start": e.start} for e in self.entries]},
            "winner": {"name": self.winner.name, "origin": self.winner.origin, "shots": self.winner.shots, "selector": self.winner.selector,
                       "is_start": self.winner_is_start, "search_score_optimistic": self.winner.mean},
            "confirmation": None if c is None else {
                "run_id": self.confirm_run, "n": c.n, "start_mean": c.start_mean, "winner_mean": c.winner_mean, "difference": c.difference,
                "ci": [c.low, c.high], "confidence": c.confidence, "p_value": c.p_value, "test": c.test, "alpha": c.alpha,
                "verdict": c.verdict, "dropped": c.dropped},
            "written": None if self.written is None else str(self.written), "prompt_name": self.written_name, "run_command": self.run_command,
        }


# -- the split ------------------------------------------------------------------------
def split_items(items: Sequence[Item], share: float, seed: int) -> Split:
    """Search and held-out items, disjoint, fixed by the seed; a declared cluster goes whole to one side."""
    units = sorted({item.cluster or item.id for item in items}, key=lambda u: (hashlib.sha256(f"{seed}\x00optimize\x00{u}".encode()).hexdigest(), u))
    n_search = min(len(units) - 1, max(1, round(share * len(units))))
    searched = set(units[:n_search])
    search = tuple(i for i in items if (i.cluster or i.id) in searched)
    heldout = tuple(i for i in items if (i.cluster or i.id) not in searched)
    return Split(seed, share, search, heldout)


# -- the runs -------------------------------------------------------------------------
def evaluate_cells(
    spec: ExperimentSpec, cells: Sequence[Cell], store: Store, phase: dict[str, Any], *, race: RaceSpec | None = None,
    backends: Mapping[str, Backend] | None = None, show_progress: bool = True, log: Callable[[str], None] | None = None,
    cache_entries: Mapping[str, Any] | None = None,
) -> tuple[str, CacheCounts, list[StoredRace]]:
    """Evaluate these cells (raced when ``race``) as one run whose identity holds ``phase``; returns (run, counts, races).

    ``cache_entries`` (a model proposer's fresh answers) are written to the response cache with the run."""
    identities = model_identities(spec, backends)
    config = config_snapshot(spec, cells, identities)
    config["optimize"] = phase
    config["template_sources"] = {f"{c.task.name}/{c.template.name}": c.template.source for c in cells}
    config_hash = stable_hash({k: v for k, v in config.items() if k != "template_sources"})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    fresh_id = f"{stamp}-{stable_hash([config_hash, os.getpid(), datetime.now().isoformat()])[:6]}"
    claim = store.claim_run(fresh_id, config_hash, config, versions(), spec.seed)
    run_id = claim.run_id
    if claim.resumed_from is not None and log is not None:
        log(f"resuming run {run_id}: {store.item_count(run_id)} items already stored (same search, same model content)")
    if cache_entries:
        store.write_items(run_id, [], dict(cache_entries))
    counts = CacheCounts()
    ready: dict[str, Backend] = dict(backends or {})
    model = spec.models[0]
    identity = identities[0]

    def load() -> Backend:
        if model.label not in ready:
            ready[model.label] = backend_class(model)(model)
        return ready[model.label]

    races: list[StoredRace] = []
    total = sum(len(c.items) for c in cells)
    try:
        announce(spec.models)
        with progress_bar(str(phase.get("phase", "evaluating")), total, enabled=show_progress) as advance:
            if race is not None:
                races, _ = race_tasks(race, cells, store, run_id, {model.label: load}, {model.label: identity}, counts, advance,
                                      spec.chunk_items, spec.seed)
            else:
                for cell in cells:
                    store.add_cell(stored_cell(cell, run_id, identity))
                    done = store.done_item_ids(run_id, cell.cell_id)
                    advance(len(done))
                    todo = [(pos, item) for pos, item in enumerate(cell.items) if item.id not in done]
                    CellEvaluator(cell, store, run_id, load, counts, json.dumps(identity, sort_keys=True), advance, spec.chunk_items).evaluate(todo)
        export_run(store, run_id)
        store.finish_run(run_id)
    except Exception as exc:
        reason = redact_text(str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}", limit=2000)
        store.fail_run(run_id, reason)
        raise
    except BaseException:
        store.release_run(run_id)
        raise
    finally:
        for label in [label for label in ready if backends is None or label not in backends]:
            ready.pop(label).close()
    return run_id, counts, races


# -- proposing ------------------------------------------------------------------------
@dataclass(frozen=True)
class Asking:
    """One meta-prompt's request, in the shape the response cache's ``resolve`` takes."""

    requests: tuple[GenerateRequest, ...]


def renders(start: Cell, items: Sequence[Item], pool: Sequence[Item], split: str) -> Callable[[str], str | None]:
    """A check of a candidate text: None when it compiles and renders every search item (and the pool), else why not."""

    def check(text: str) -> str | None:
        try:
            template = PromptTemplate(name=start.template.name, path=start.template.path, source=text)
            check_renders(start.task, template, items, pool, split)
        except HarnessError as exc:
            return str(exc).splitlines()[0][:200]
        return None

    return check


def proposer_model(o: OptimizeSpec, backends: Mapping[str, Backend] | None) -> tuple[ModelSpec, dict[str, Any]]:
    """A model proposer's spec and identity (what keys its answers in the cache); a clean error when it cannot be used."""
    try:
        model = parse_model(o.proposer)
    except HarnessError as exc:
        raise HarnessError(f"--proposer {o.proposer!r}: give 'grammar' or BACKEND:MODEL; {exc}") from None
    ready = dict(backends or {})
    try:
        identity = ready[model.label].identity if model.label in ready else backend_class(model).identity_of(model)
    except Exception as exc:  # a model that does not exist, a server that cannot be reached ...
        raise HarnessError(f"--proposer {o.proposer}: the proposer model cannot be used: {clip(str(exc) or type(exc).__name__, 400)}") from None
    return model, identity


def propose(o: OptimizeSpec, start: Cell, search: Sequence[Item], pool: Sequence[Item], store: Store,
            backends: Mapping[str, Backend] | None) -> tuple[Proposals, dict[str, Any], dict[str, Any]]:
    """The candidates, what identifies the proposer (for the search's identity) and a model proposer's fresh cache entries."""
    setting = (start.shots, start.selector)
    check = renders(start, search, pool, o.experiment.fewshot_split)
    if o.proposer == "grammar":
        proposals = grammar_candidates(start.template.source, setting, o.shots, o.selectors, o.k, o.experiment.seed, o.instructions, check)
        return proposals, {"proposer": "grammar", "instructions": list(o.instructions)}, {}
    model, identity = proposer_model(o, backends)
    ready = dict(backends or {})
    loaded: list[Backend] = []

    def backend() -> Backend:
        if model.label in ready:
            return ready[model.label]
        try:
            loaded.append(backend_class(model)(model))
        except Exception as exc:
            raise HarnessError(f"--proposer {o.proposer}: the proposer model could not be loaded: {clip(str(exc) or type(exc).__name__, 400)}") from None
        return loaded[-1]

    requests = proposal_requests(start.template.source, start.task.spec.description or "", o.k, o.experiment.seed)
    try:
        resolved, fresh = resolve([Asking((r,)) for r in requests], json.dumps(identity, sort_keys=True), store, backend, CacheCounts())
    finally:
        for b in loaded:
            b.close()
    results = [r[0][0] for r in resolved]
    proposals = model_candidates(start.template.source, results, setting, model.label, check)
    return proposals, {"proposer": model.label, "identity": identity, "meta_prompts": [r.key() for r in requests]}, fresh


# -- the whole search ------------------------------------------------------------------
def optimize(o: OptimizeSpec, store: Store | Callable[[], Store], *, backends: Mapping[str, Backend] | None = None,
             show_progress: bool = True, log: Callable[[str], None] | None = None) -> OptimizeReport:
    o.check()
    say = log or (lambda line: None)
    spec = o.experiment
    if len(spec.tasks) != 1 or len(spec.models) != 1:
        raise HarnessError("harness optimize: one task and one model")
    base = spec.model_copy(update={"prompts": [o.start], "shots": list(o.shots), "selectors": list(o.selectors), "race": None})
    planned = plan(base)  # the task, START and the model checked, every item rendered, before anything is stored
    start_setting = settings(o.shots, o.selectors)[0]
    start0 = next(c for c in planned if (c.shots, c.selector) == start_setting)
    task = start0.task
    if task.group:
        raise HarnessError(f"harness optimize: task '{spec.tasks[0]}' is a group of tasks; give one member (e.g. {task.name})")
    try:  # the race needs a per-item metric with known bounds: refused here, before a proposer is asked or anything stored
        race_metric(start0)
    except HarnessError as exc:
        text = str(exc).removeprefix("--until-decided: ").replace(", or run without --until-decided", "")
        raise HarnessError(f"harness optimize races the candidates, but {text}") from None
    split = split_items(start0.items, o.search_share, spec.seed)
    if len(split.search) < 2 or len(split.heldout) < 2:
        raise HarnessError(f"harness optimize: {len(start0.items)} evaluated items split {len(split.search)} / {len(split.heldout)}: both the "
                           "search and the held-out split need at least 2 items (more items: --sample/--limit, or another --search-share)")
    held = {i.id for i in split.heldout}
    pool = tuple(p for p in start0.pool if p.id not in held)  # no held-out item as a demonstration, in either phase
    if o.proposer != "grammar":
        proposer_model(o, backends)  # before the database is opened: a proposer that cannot be used leaves nothing behind
    store = store if isinstance(store, Store) else store()
    proposals, proposer_id, fresh = propose(o, start0, split.search, pool, store, backends)
    if not proposals.candidates:
        dropped = ", ".join(f"{n} {why}" for why, n in proposals.dropped.items()) or "none"
        raise HarnessError(f"harness optimize: the proposer ({o.proposer}) gave no usable candidate ({proposals.proposed} proposed, dropped: "
                           f"{dropped}{'; e.g. ' + proposals.examples[0] if proposals.examples else ''}): nothing to search")
    say(f"optimize {task.name}: {len(proposals.candidates)} candidates ({o.proposer}) + {o.start}; search on {len(split.search)} items, "
        f"{len(split.heldout)} held out (seed {spec.seed})")

    # the candidates' templates, beside the database (their text is part of each cell's id)
    folder = Path(store.path).parent / "optimize" / f"{task.name}-{split.key()[:8]}" / task.name
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".chat.jinja" if start0.template.chat else ".jinja"
    names: dict[str, str] = {}
    entries_meta: list[tuple[str, Candidate]] = []
    for cand in proposals.candidates:
        digest = hashlib.sha256(cand.text.encode()).hexdigest()[:8]
        name = names.setdefault(cand.text, f"{start0.template.name}__c{digest}")
        path = folder / f"{name}{suffix}"
        if not path.exists() or path.read_text(encoding="utf-8") != cand.text:
            write_atomic(path, [cand.text])
        entries_meta.append((name, cand))

    def cell_for(template: PromptTemplate, shots: int, selector: str, items: tuple[Item, ...], phase: str) -> Cell:
        reused = template.name == start0.template.name and shots == start0.shots and selector == start0.selector
        subset = ("optimize", phase, split.key(), *(spec.subset_key() or ()))
        return replace(start0, template=template, shots=shots, selector=selector, items=items, pool=pool if shots > 0 else (),
                       subset=subset, zero_shot=start0.zero_shot if reused and shots == 0 else {})

    templates = {name: load_prompt(task, str(folder / f"{name}{suffix}")) for name in dict.fromkeys(n for n, _ in entries_meta)}
    start_template = start0.template
    search_cells = [cell_for(start_template, start0.shots, start0.selector, split.search, "search")]
    for name, cand in entries_meta:
        search_cells.append(cell_for(templates[name], cand.shots, cand.selector, split.search, "search"))
    ids = [c.cell_id for c in search_cells]
    if len(set(ids)) != len(ids):  # the same text at the same setting twice cannot happen (proposers dedupe); guard anyway
        raise HarnessError("harness optimize: two candidates are the same cell")
    phase = {"phase": "search", "task": task.name, "start": o.start, "split": {"seed": spec.seed, "share": o.search_share, "key": split.key(),
             "search": len(split.search), "heldout": len(split.heldout)}, **proposer_id}
    race = RaceSpec(alpha=o.alpha, round=o.round)
    search_spec = base.model_copy(update={"race": race})
    search_run, counts, races = evaluate_cells(search_spec, search_cells, store, phase, race=race, backends=backends,
                                               show_progress=show_progress, log=log, cache_entries=fresh)
    outcome = races[0]
    by_cell = {c.cell_id: c for c in outcome.cells}
    origin = {search_cells[0].cell_id: ("START", start_template.name)}
    for cell, (name, cand) in zip(search_cells[1:], entries_meta):
        origin[cell.cell_id] = (cand.origin, name)
    label_of = {c.cell_id: origin[c.cell_id][1] + (f" · {c.shots}-shot" + (f" {c.selector}" if c.selector != "none" else "")) for c in search_cells}
    entries = tuple(
        SearchEntry(origin[c.cell_id][1], origin[c.cell_id][0], c.shots, c.selector, c.cell_id, by_cell[c.cell_id].status,
                    by_cell[c.cell_id].round, by_cell[c.cell_id].items, _real(by_cell[c.cell_id].mean),
                    label_of.get(by_cell[c.cell_id].beaten_by or "", by_cell[c.cell_id].beaten_by), start=(i == 0))
        for i, c in enumerate(search_cells)
    )
    winner = pick_winner(entries, outcome.higher_is_better)
    say(f"search: {outcome.reason} after {outcome.rounds} round(s), {outcome.evaluations} item evaluations; winner {winner.name}")
    report = OptimizeReport(task.name, outcome.metric, outcome.higher_is_better, o.start, start_setting, o.proposer, split, proposals, entries,
                            outcome, search_run, counts.requests, counts.backend_requests, counts.cache_hits, winner)
    if winner.start:
        return report

    # the confirmation: START and the winner on the held-out items, one paired test
    win_cell = next(c for c in search_cells if c.cell_id == winner.cell_id)
    confirm_cells = [cell_for(start_template, start0.shots, start0.selector, split.heldout, "confirm"),
                     cell_for(win_cell.template, win_cell.shots, win_cell.selector, split.heldout, "confirm")]
    confirm_phase = {"phase": "confirm", "task": task.name, "start": o.start, "winner": winner.name, "search_run": search_run,
                     "split": phase["split"], "alpha": o.alpha}
    confirm_run, _, _ = evaluate_cells(base, confirm_cells, store, confirm_phase, backends=backends, show_progress=show_progress, log=log)
    confirmation = confirm(store, confirm_run, confirm_cells[0].cell_id, confirm_cells[1].cell_id, o.alpha, spec.seed)
    name, path = write_winner(o, task.name, win_cell, winner, confirmation, search_run, confirm_run, suffix, start_template.name)
    setting = f" --shots {win_cell.shots}" + (f" --selector {win_cell.selector}" if win_cell.selector != "none" else "")
    command = f"harness run --task {spec.tasks[0]} --prompts-dir {o.output} --prompt {name}{setting}"
    return replace(report, confirm_run=confirm_run, confirmation=confirmation, written=path, written_name=name, run_command=command)


def _real(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def pick_winner(entries: Sequence[SearchEntry], higher_is_better: bool) -> SearchEntry:
    """The race's winner; else the survivor with the best search mean (START first on a tie, then the earlier candidate)."""
    won = [e for e in entries if e.status == "winner"]
    if won:
        return won[0]
    alive = [e for e in entries if e.status != "eliminated"] or list(entries)
    sign = 1.0 if higher_is_better else -1.0
    order = {id(e): i for i, e in enumerate(entries)}
    return max(alive, key=lambda e: (-math.inf if e.mean is None else sign * e.mean, e.start, -order[id(e)]))


def confirm(store: Store, run_id: str, start_cell: str, winner_cell: str, alpha: float, seed: int) -> Confirmation:
    """Winner − START on the held-out items both have: the compare layer's paired engine, one test at ``alpha``."""
    summaries = {s.cell.cell_id: s for s in summarize(store, [run_id], confidence=1 - alpha, seed=seed)}
    start, winner = summaries[start_cell], summaries[winner_cell]
    pairing = pair(winner.scores, start.scores)
    clusters = [start.cluster_of(i) for i in pairing.item_ids] if start.clusters else None
    kind: Kind = "binary" if start.kind == "binary" else "continuous"
    result = compare_pairing(pairing, kind, start.higher_is_better, confidence=1 - alpha, seed=seed, clusters=clusters)
    if result.p_value < alpha and result.diff.mean != 0:
        verdict = "better" if result.a_better else "worse"
    else:
        verdict = "not shown better"
    return Confirmation(pairing.n, pairing.item_ids, result.mean_b, result.mean_a, result.diff.mean, result.diff.low, result.diff.high,
                        1 - alpha, result.p_value, result.test, alpha, verdict, dict(pairing.dropped))


def write_winner(o: OptimizeSpec, task: str, cell: Cell, winner: SearchEntry, c: Confirmation, search_run: str, confirm_run: str,
                 suffix: str, start_name: str) -> tuple[str, Path]:
    """The winner as a prompt variant of ``task`` in ``o.output`` (``--prompts-dir OUT --prompt NAME``), its provenance in a comment."""
    digest = hashlib.sha256(f"{cell.template.source}\x00{cell.shots}\x00{cell.selector}".encode()).hexdigest()[:6]
    name = f"{start_name}__opt_{digest}"
    path = Path(o.output) / task / f"{name}{suffix}"
    setting = f"{cell.shots}-shot" + (f" {cell.selector}" if cell.selector != "none" else "")
    about = (f"harness optimize {task} --prompt {o.start} (seed {o.experiment.seed}): {winner.origin}; use it at {setting}. "
             f"Confirmed on {c.n} held-out items: winner - {o.start} = {c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}], "
             f"p = {c.p_value:.4g}, {c.verdict} (search run {search_run}, confirmation run {confirm_run})")
    write_atomic(path, ["{# " + about.replace("#}", "# }") + " #}\n", cell.template.source])
    return name, path

