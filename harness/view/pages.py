"""What each page of ``harness view`` shows, as plain values for its template (no HTTP here).

The numbers come from the analysis layer as ``harness compare`` computes them: a run page is
``compare_runs`` of that run, formatted with the terminal report's own formatters and notes; the
runs page's best cell is the first of ``ranked(summarize(...))``, the order ``compare`` ranks by.
Nothing here computes a statistic of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.compare import Comparison, RankedCell, TaskRanking, answer_text, ranked, summarize, target_text
from harness.prompts.messages import prompt_from_json, prompt_text
from harness.report.numbers import p_value
from harness.report.terminal import cell_name, number_formats, ranking_notes, varying_fields, verdict_text
from harness.scoring import get_metric
from harness.stats.verdicts import points
from harness.store import Store, StoredCell, StoredItem
from harness.store.browse import RunOverview


@dataclass(frozen=True)
class BestCell:
    task: str
    label: str
    metric: str
    score: str


def best_cells(store: Store, overview: RunOverview) -> list[BestCell]:
    """Per task of the run, its top-ranked cell and score (none before any item is scored)."""
    if overview.n_items == 0:
        return []
    out = []
    for task, cells in ranked(summarize(store, [overview.run.id])).items():
        scored = [s for s in cells if s.n > 0]
        if not scored:
            continue
        best = scored[0]
        value = best.interval.mean
        shown = f"{100 * value:.1f}" if all(abs(s.interval.mean) <= 1.0 for s in scored if s.interval.mean == s.interval.mean) else f"{value:.3g}"
        out.append(BestCell(task, best.label, best.metric, shown))
    return out


def _names(cells: Sequence[RankedCell], varying: set[str]) -> str:
    names = [cell_name(rc.summary, varying) for rc in cells]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _span(values: Sequence[float], percent: bool) -> str:
    low, high = min(values), max(values)
    unit = " points" if percent else ""
    return f"{points(low, percent)}{unit}" if points(low, percent) == points(high, percent) else f"{points(low, percent)}–{points(high, percent)}{unit}"


def verdict_sentence(comp: Comparison, ranking: TaskRanking) -> str:
    """The task's verdict in one sentence: which cells may be best, then which are worse (by how much),
    equivalent, or inconclusive (what the comparison can detect and, with a margin, the items it would need)."""
    varying = varying_fields([rc.summary for rc in ranking.cells])
    score, _, _ = number_formats(ranking)
    best = ranking.cells[0]
    sure = f"{1 - ranking.alpha:.0%}"
    head = (f"On {ranking.task} ({ranking.metric}, {ranking.n} items), {cell_name(best.summary, varying)} ranks first at "
            f"{score(best.summary.interval.mean)}")
    others = [rc for rc in ranking.best_set if rc is not best]
    parts = [head + (f", and {_names(others, varying)} may be best too ({sure} confidence)" if others
                     else f" and is the only cell that may be best ({sure} confidence)")]
    worse = [rc for rc in ranking.cells if rc.verdict.code == "worse" and rc.vs_best is not None]
    if worse:
        gaps = [abs(rc.vs_best.diff.mean) for rc in worse if rc.vs_best is not None]
        parts.append(f"{_names(worse, varying)} {'is' if len(worse) == 1 else 'are'} worse, by {_span(gaps, ranking.percent)}")
    equivalent = [rc for rc in ranking.cells if rc.verdict.code == "equivalent"]
    if equivalent:
        parts.append(f"{_names(equivalent, varying)} {'is' if len(equivalent) == 1 else 'are'} {equivalent[0].verdict.text} of the best")
    unsure = [rc for rc in ranking.cells if rc.verdict.code == "inconclusive" and rc.verdict.resolution is not None]
    if unsure:
        mdes = [rc.verdict.resolution.mde for rc in unsure if rc.verdict.resolution is not None]
        needed = [rc.verdict.resolution.items_needed for rc in unsure if rc.verdict.resolution is not None
                  and rc.verdict.resolution.items_needed is not None]
        text = (f"{_names(unsure, varying)} {'is' if len(unsure) == 1 else 'are'} inconclusive against it "
                f"(the smallest difference detectable at n={ranking.n} is ±{_span(mdes, ranking.percent)}")
        if needed and ranking.margin is not None:
            text += f"; about {max(needed):,} items would settle ±{points(ranking.margin, ranking.percent)}"
        parts.append(text + ")")
    return "; ".join(parts) + "."


@dataclass(frozen=True)
class RankedRow:
    rank: int
    cell: str
    cell_id: str
    n: str
    score: str
    ci: str
    diff: str
    diff_ci: str
    p_adjusted: str
    verdict: str
    verdict_code: str
    may_be_best: bool


@dataclass(frozen=True)
class TaskView:
    task: str
    metric: str
    arrow: str
    sentence: str
    rows: list[RankedRow]
    notes: list[str]


def task_views(comp: Comparison) -> list[TaskView]:
    """Per task: the verdict sentence, the ranked table and the notes ``harness compare`` prints under it."""
    out = []
    for ranking in comp.rankings:
        varying = varying_fields([rc.summary for rc in ranking.cells])
        score, signed, _ = number_formats(ranking)
        rows = []
        for rc in ranking.cells:
            s, ci, vs = rc.summary, rc.summary.interval, rc.vs_best
            rows.append(RankedRow(
                rc.rank, cell_name(s, varying), s.cell.cell_id, f"{s.n}/{s.cell.n_planned}" if s.missing else str(s.n), score(ci.mean),
                f"[{score(ci.low)}, {score(ci.high)}]", "best" if vs is None else signed(vs.diff.mean),
                "" if vs is None else f"[{signed(vs.diff.low)}, {signed(vs.diff.high)}]", p_value(rc.p_adjusted),
                verdict_text(comp, rc), rc.verdict.code, rc.may_be_best))
        out.append(TaskView(ranking.task, ranking.metric, "↑" if ranking.higher_is_better else "↓", verdict_sentence(comp, ranking), rows,
                            [line.strip() for line in ranking_notes(comp, ranking, varying)]))
    return out


@dataclass(frozen=True)
class Provenance:
    seed: int
    created_at: str
    finished_at: str | None
    settings: list[tuple[str, str]]  # the run's spec fields that choose items and demonstrations
    versions: list[tuple[str, str]]
    models: list[tuple[str, str]]  # label, identity (JSON)
    templates: list[tuple[str, str, str, str]]  # task, template name, sha256, its text
    data: list[tuple[str, str, str]]  # task, split, sha256


SETTINGS = ("tasks", "shots", "selectors", "draws", "limit", "sample", "stratify", "split", "fewshot_split", "max_tokens")


def provenance(overview: RunOverview) -> Provenance:
    config, run = overview.run.config, overview.run
    spec = config.get("spec", {}) if isinstance(config.get("spec"), dict) else {}
    settings = [(name, json.dumps(spec[name], ensure_ascii=False)) for name in SETTINGS if name in spec and spec[name] is not None]
    models = list({c.model: json.dumps(c.model_json, sort_keys=True, ensure_ascii=False) for c in overview.cells}.items())
    sources = config.get("template_sources") or {}
    templates = [(task, name, digest, str(sources.get(f"{task}/{name}", "(not stored: the run was made before harness kept template texts)")))
                 for task, name, digest in sorted({(c.task, c.prompt, c.prompt_sha256) for c in overview.cells})]
    data = []
    for task, info in sorted((config.get("tasks") or {}).items()):
        for split, digest in sorted((info.get("data") or {}).items() if isinstance(info, dict) else []):
            data.append((task, split, str(digest)))
    versions = sorted((str(k), str(v)) for k, v in run.versions.items())
    return Provenance(run.seed, run.created_at, run.finished_at, settings, versions, models, templates, data)


def main_metric(cells: Sequence[StoredCell]) -> tuple[str, bool]:
    """The metric the items page scores by (the task's main one) and whether higher is better."""
    name = cells[0].metrics[0]
    return name, get_metric(name).higher_is_better


def task_cells(overview: RunOverview, task: str) -> tuple[tuple[str, ...], str, bool]:
    """The items page's columns for ``task``: its cells' ids in the run's order, the metric it scores by, whether higher is better."""
    cells = [c for c in overview.cells if c.task == task]
    metric, higher_is_better = main_metric(cells) if cells else ("", True)
    return tuple(c.cell_id for c in cells), metric, higher_is_better


@dataclass(frozen=True)
class MatrixCell:
    prediction: str
    score: str
    scored: bool
    right: bool | None  # a 0/1 score: 1 or 0; None for another score or none


def score_text(value: float | None) -> str:
    if value is None or value != value:
        return "unscorable"
    return f"{value:g}"


def matrix_cell(row: StoredItem | None, metric: str) -> MatrixCell:
    if row is None:
        return MatrixCell("(not stored)", "", False, None)
    value = row.scores.get(metric)
    right = None if value is None or value not in (0.0, 1.0) else value == 1.0
    return MatrixCell(answer_text(row), score_text(value), value is not None and value == value, right)


def input_text(row: StoredItem, limit: int = 240) -> str:
    """The end of the rendered prompt (the item's own question follows its demonstrations)."""
    text = prompt_text(prompt_from_json(row.prompt))
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class ChoiceView:
    text: str
    logprob: str
    chosen: bool
    correct: bool


@dataclass(frozen=True)
class ItemCellView:
    cell: StoredCell
    prompt: str
    demo_ids: list[str]
    choices: list[ChoiceView]
    response: str
    extracted: str | None
    target: str
    scores: list[tuple[str, str]]
    answer: str
    latency_s: float
    n_tokens: int
    cached: bool


def item_cell_view(cell: StoredCell, row: StoredItem) -> ItemCellView:
    choices: list[ChoiceView] = []
    if row.continuations:
        results = row.response[: len(row.continuations)]
        logprobs = [r.get("logprob") for r in results]
        numbers = [float(v) for v in logprobs if isinstance(v, (int, float)) and v == v]
        top = max(numbers) if numbers else None
        correct = set(row.target) if isinstance(row.target, list) and all(isinstance(t, int) for t in row.target) else {row.target}
        for i, text in enumerate(row.continuations):
            value = logprobs[i] if i < len(logprobs) else None
            shown = f"{value:.3f}" if isinstance(value, (int, float)) and value == value else "—"
            choices.append(ChoiceView(text, shown, top is not None and value == top, i in correct))
    response = "" if row.continuations else "\n".join(str(r.get("text", "")) for r in row.response)
    return ItemCellView(cell, prompt_text(prompt_from_json(row.prompt)), list(row.demo_ids), choices, response, row.extracted,
                        str(target_text(row)), [(name, score_text(value)) for name, value in row.scores.items()], answer_text(row),
                        row.latency_s, row.n_tokens, row.cached)


def cell_label(cell: StoredCell, cells: Sequence[StoredCell]) -> str:
    """A cell named by what varies among ``cells`` (prompt, shots, model), as the tables name it."""
    parts = []
    if len({c.prompt for c in cells}) > 1 or len(cells) == 1:
        parts.append(cell.prompt)
    if len({(c.shots, c.selector) for c in cells}) > 1:
        parts.append(f"{cell.shots}-shot" + ("" if cell.selector == "none" else f" {cell.selector}"))
    if len({c.model for c in cells}) > 1:
        parts.append(cell.model)
    return " · ".join(parts) or cell.prompt


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
