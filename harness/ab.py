"""A/B of a tuned model against its base on identical prompts and items.

Both models run the same experiment spec (only the model differs), so every cell of the
tuned model has a twin of the base with the same template, demonstrations and items; a
finished identical run is reused instead of evaluated again. Per task the paired test
pools all matched cells (pairing key: prompt, shots, selector, item id); the overall
verdict uses Holm-corrected task p-values, so many tasks do not manufacture a win.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.backends import ModelSpec
from harness.compare import CellSummary, summarize
from harness.errors import HarnessError
from harness.paired import PairedResult, compare_scores
from harness.stats import DEFAULT_RESAMPLES, holm
from harness.store import Store


@dataclass(frozen=True)
class ABCell:
    task: str
    prompt: str
    shots: int
    selector: str
    base: CellSummary
    tuned: CellSummary
    result: PairedResult  # tuned minus base


@dataclass(frozen=True)
class ABTask:
    task: str
    metric: str
    higher_is_better: bool
    cells: list[ABCell]
    pooled: PairedResult  # tuned minus base over all matched cells' items
    p_holm: float

    def outcome(self, alpha: float) -> str:
        if self.p_holm >= alpha:
            return "no significant difference"
        return "tuned better" if self.pooled.a_better else "tuned worse"


@dataclass(frozen=True)
class ABReport:
    base: str
    tuned: str
    base_run: str
    tuned_run: str
    tasks: list[ABTask]
    alpha: float
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        better = [t.task for t in self.tasks if t.outcome(self.alpha) == "tuned better"]
        worse = [t.task for t in self.tasks if t.outcome(self.alpha) == "tuned worse"]
        n = len(self.tasks)
        if better and not worse:
            return f"tuned is better than base: significant on {len(better)} of {n} task(s) ({', '.join(better)}), worse on none"
        if worse and not better:
            return f"tuned is worse than base: significant on {len(worse)} of {n} task(s) ({', '.join(worse)}), better on none"
        if better and worse:
            return f"mixed: tuned better on {', '.join(better)}, worse on {', '.join(worse)}"
        return f"no significant difference between tuned and base on any of {n} task(s) (Holm, α={self.alpha})"

    def to_dict(self) -> dict[str, Any]:
        def paired(r: PairedResult) -> dict[str, Any]:
            return {"n": r.n, "dropped": r.dropped, "base": r.mean_b, "tuned": r.mean_a, "diff": r.diff.mean,
                    "diff_ci_low": r.diff.low, "diff_ci_high": r.diff.high, "p_value": r.p_value, "test": r.test,
                    "tuned_wins": r.wins, "ties": r.ties, "tuned_losses": r.losses, "warning": r.warning}

        return {
            "base": self.base, "tuned": self.tuned, "base_run": self.base_run, "tuned_run": self.tuned_run, "alpha": self.alpha,
            "verdict": self.verdict, "warnings": self.warnings,
            "tasks": [
                {"task": t.task, "metric": t.metric, "higher_is_better": t.higher_is_better, "outcome": t.outcome(self.alpha),
                 "p_holm": t.p_holm, **paired(t.pooled),
                 "cells": [{"prompt": c.prompt, "shots": c.shots, "selector": c.selector, "base_cell": c.base.cell.cell_id,
                            "tuned_cell": c.tuned.cell.cell_id, **paired(c.result)} for c in t.cells]}
                for t in self.tasks
            ],
        }


def tuned_spec(base: ModelSpec, tuned: str | None, adapter: str | None) -> ModelSpec:
    """The tuned model: a full checkpoint (BACKEND:MODEL) or the base plus a PEFT adapter."""
    from harness.backends import parse_model

    if bool(tuned) == bool(adapter):
        raise HarnessError("harness ab: give the tuned model as exactly one of --tuned BACKEND:MODEL or --adapter PATH")
    if adapter:
        return base.model_copy(update={"adapter": adapter})
    return parse_model(tuned)


def finished_run(store: Store, spec: Any) -> str | None:
    """The latest finished run of exactly this experiment, if any: same config snapshot, which
    holds each model's identity (content fingerprints of weights, adapter, tokenizer and chat
    template, dtype, max_length...), so a model rewritten at the same path is not reused."""
    from harness.runner import config_snapshot, plan

    config = config_snapshot(spec, plan(spec))
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()  # = runner's config hash
    row = store.db.execute(
        "SELECT id FROM runs WHERE config_hash = ? AND status = 'finished' ORDER BY created_at DESC, rowid DESC LIMIT 1", (digest,)
    ).fetchone()
    return str(row["id"]) if row else None


def run_pair(
    spec: Any, base: ModelSpec, tuned: ModelSpec, store: Store, *, reuse: bool = True, show_progress: bool = True,
    log: Any = None,
) -> tuple[str, str]:
    """Evaluate (or reuse) the spec once with each model; returns (base run, tuned run).

    A reused run, a resumed one and answers served from the response cache are each said in
    one line through ``log`` (a callable taking the line; default: print to stderr, so
    ``--json`` stdout stays JSON)."""
    import sys

    from harness.runner import run_experiment

    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if base.label == tuned.label:
        raise HarnessError(f"harness ab: base and tuned are the same model ({base.label})")
    runs = []
    for model in (base, tuned):
        model_spec = spec.model_copy(update={"models": [model]})
        existing = finished_run(store, model_spec) if reuse else None
        if existing:
            say(f"reusing finished run {existing} for {model.label} (same config and model content)")
        runs.append(existing or run_experiment(model_spec, store, show_progress=show_progress, log=say).run_id)
    return runs[0], runs[1]


def _pick(summaries: list[CellSummary], run: str, label: str | None, role: str) -> list[CellSummary]:
    models = sorted({s.cell.model for s in summaries})
    if label is not None:
        chosen = [s for s in summaries if s.cell.model == label]
        if not chosen:
            raise HarnessError(f"harness ab: run {run} has no cells of the {role} model '{label}' (it has: {', '.join(models)})")
        return chosen
    if len(models) != 1:
        raise HarnessError(f"harness ab: run {run} holds {len(models)} models ({', '.join(models)}); name the {role} one with --{role}")
    return summaries


def ab_compare(
    store: Store, base_run: str, tuned_run: str, *, base_label: str | None = None, tuned_label: str | None = None,
    metric: str | None = None, alpha: float = 0.05, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> ABReport:
    """Pair the base run's cells with the tuned run's and test tuned minus base."""
    base = _pick(summarize(store, [base_run], metric, seed=seed, resamples=resamples), base_run, base_label, "base")
    tuned = _pick(summarize(store, [tuned_run], metric, seed=seed, resamples=resamples), tuned_run, tuned_label, "tuned")
    if base_run == tuned_run and base_label is None:
        raise HarnessError("harness ab: the same run for both sides; name the models with --base and --tuned")

    def key(s: CellSummary) -> tuple[str, str, int, str]:
        return (s.cell.task, s.cell.prompt, s.cell.shots, s.cell.selector)

    tuned_by_key = {key(s): s for s in tuned}
    warnings: list[str] = []
    by_task: dict[str, list[ABCell]] = defaultdict(list)
    for b in base:
        t = tuned_by_key.pop(key(b), None)
        if t is None:
            warnings.append(f"{' / '.join(map(str, key(b)))}: only the base has this cell; left out")
            continue
        if t.cell.prompt_sha256 != b.cell.prompt_sha256:
            warnings.append(f"{' / '.join(map(str, key(b)))}: the template changed between the two runs; the prompts are not identical")
        result = compare_scores(t.scores, b.scores, b.kind, b.higher_is_better, resamples=resamples, seed=seed)  # type: ignore[arg-type]
        by_task[b.cell.task].append(ABCell(*key(b), base=b, tuned=t, result=result))
    warnings += [f"{' / '.join(map(str, k))}: only the tuned model has this cell; left out" for k in tuned_by_key]
    if not by_task:
        raise HarnessError(f"harness ab: runs {base_run} and {tuned_run} have no matching cells (same task, prompt, shots, selector)")
    pooled: list[tuple[str, list[ABCell], PairedResult]] = []
    for task, cells in by_task.items():
        a = {f"{c.prompt}|{c.shots}|{c.selector}|{i}": v for c in cells for i, v in c.tuned.scores.items()}
        b = {f"{c.prompt}|{c.shots}|{c.selector}|{i}": v for c in cells for i, v in c.base.scores.items()}
        first = cells[0].base
        pooled.append((task, cells, compare_scores(a, b, first.kind, first.higher_is_better, resamples=resamples, seed=seed)))  # type: ignore[arg-type]
    adjusted = holm([r.p_value for _, _, r in pooled])
    tasks = [ABTask(task, cells[0].base.metric, cells[0].base.higher_is_better, cells, r, p) for (task, cells, r), p in zip(pooled, adjusted)]
    for t in tasks:
        if t.pooled.warning:
            warnings.append(f"{t.task}: {t.pooled.warning}")
        if t.pooled.dropped:
            warnings.append(f"{t.task}: paired on {t.pooled.n} items, dropped {', '.join(f'{v} {k}' for k, v in t.pooled.dropped.items())}")
    base_name = base_label or base[0].cell.model
    tuned_name = tuned_label or tuned[0].cell.model
    return ABReport(base_name, tuned_name, base_run, tuned_run, tasks, alpha, warnings)


def print_ab(report: ABReport, out: Any = None) -> None:
    """The paired result per task and cell, then the verdict."""
    from rich.table import Table

    from harness.report import console

    out = out or console()
    table = Table(title=f"A/B: tuned = {report.tuned}  vs  base = {report.base}  (Δ = tuned − base)", title_justify="left")
    for column in ("task", "prompt", "shots", "n", "metric", "base", "tuned", "Δ", "95% CI of Δ", "tuned W/T/L", "p", "p (Holm)", "test", "outcome"):
        table.add_column(column, justify="left" if column in ("task", "prompt", "metric", "test", "outcome") else "right")

    def pct(v: float) -> str:
        return "—" if v != v else f"{100 * v:.1f}"

    def sig(v: float) -> str:
        return "—" if v != v else f"{100 * v:+.1f}"

    def p(v: float | None) -> str:
        return "" if v is None else ("<0.001" if v < 0.001 else f"{v:.3f}")

    for t in report.tasks:
        rows = [(c.prompt, str(c.shots) + ("" if c.selector == "none" else f" {c.selector}"), c.result, None, "") for c in t.cells]
        if len(t.cells) > 1:
            rows.append(("all cells", "", t.pooled, t.p_holm, t.outcome(report.alpha)))
        else:
            rows = [(rows[0][0], rows[0][1], t.pooled, t.p_holm, t.outcome(report.alpha))]
        for prompt, shots, r, ph, outcome in rows:
            table.add_row(t.task, prompt, shots, str(r.n), t.metric, pct(r.mean_b), pct(r.mean_a), sig(r.diff.mean),
                          f"[{sig(r.diff.low)}, {sig(r.diff.high)}]", f"{r.wins}/{r.ties}/{r.losses}", p(r.p_value), p(ph), r.test, outcome,
                          style="bold" if outcome and outcome != "no significant difference" else None)
    out.print(table)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"[bold]verdict:[/] {report.verdict}", highlight=False)
    out.print(f"runs: base {report.base_run}, tuned {report.tuned_run}. Items where they disagree:", highlight=False)


def cell_pairs(report: ABReport) -> Sequence[tuple[str, str]]:
    """(base RUN:CELL, tuned RUN:CELL) for every matched cell, for ``harness show --diff``."""
    return [(f"{report.base_run}:{c.base.cell.cell_id}", f"{report.tuned_run}:{c.tuned.cell.cell_id}") for t in report.tasks for c in t.cells]
