"""Training and evaluation curves of a ``harness tune`` run, as inline SVG for the HTML report.

Why it is its own module: the curves come from a tuning card (``tune_card.json`` next to the
adapter or full model), not from the results store, so the comparison report stays about
runs and only gains an appendix. Two ways in (see docs/tuning.md):
- ``harness report`` on runs whose model is a tuned folder (an ``--adapter`` or an ``hf:``
  model folder holding a card, as ``harness ab`` produces) appends that run's curves;
- ``harness report --tune OUT`` renders the curves of one or more tuning folders alone.
The plot: train loss by step on the top panel, the selection metric by step on the bottom
panel with its 95% CI at every evaluation (error bars over a shaded band; the tooltip gives n
and the interval), one shared step axis up to the configured maximum, the best (kept) step
marked on both, and an early stop marked where the run ended before its maximum. The facts
table says which items selected the checkpoint (a validation split or a train holdout).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.files import write_atomic
from harness.report.html import CSS
from harness.report.svg import bounds, escape, ticks
from harness.store.store import Store
from harness.tune.card import CARD_JSON, TuneCard, load_card

WIDTH, LEFT, RIGHT, PANEL_H, GAP, TOP = 760, 64, 24, 150, 46, 30
LOSS_COLOUR, EVAL_COLOUR, BEST_COLOUR, STOP_COLOUR = "#b2182b", "#2166ac", "#1b7837", "#8c510a"


def cards_for_runs(store: Store, run_ids: Iterable[str]) -> list[TuneCard]:
    """Cards of the tuned models evaluated in these runs (adapter folders and hf model folders), once each."""
    seen: dict[Path, TuneCard] = {}
    for run_id in run_ids:
        for model in store.run_config(run_id).get("spec", {}).get("models", []):
            for where in (model.get("adapter"), model.get("model") if model.get("backend") == "hf" else None):
                if not where:
                    continue
                folder = Path(where).expanduser().resolve()
                if folder not in seen and (card := load_card(folder)) is not None:
                    seen[folder] = card
    return list(seen.values())


def _label(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f"{v:.{min(decimals, 4)}f}"


def _panel(points: Sequence[tuple[float, float]], x: Callable[[float], float], y0: float, title: str, colour: str, css_class: str,
           clamp: tuple[float, float] | None, intervals: Sequence[tuple[float, float, int] | None] = ()) -> str:
    """One panel: horizontal gridlines with value labels, the polyline and a dot per point; with
    ``intervals`` (low, high, n per point, or None) a shaded band and an error bar per point."""
    parts = [f'<text x="{LEFT}" y="{y0 - 8}" class="panel-title" font-size="12" fill="#333">{escape(title)}</text>',
             f'<rect x="{LEFT}" y="{y0}" width="{WIDTH - LEFT - RIGHT}" height="{PANEL_H}" fill="none" stroke="#ccc"/>']
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{y0 + PANEL_H / 2}" class="tick">nothing logged</text>')
        return "".join(parts)
    bars = [(s, v, ci) for (s, v), ci in zip(points, intervals or [None] * len(points))]
    low, high = bounds([v for _, v in points] + [b for _, _, ci in bars if ci for b in ci[:2]], pad=0.0, clamp=clamp)
    pad = (high - low) * 0.08 or 0.05
    low, high = (max(clamp[0], low - pad), min(clamp[1], high + pad)) if clamp else (low - pad, high + pad)
    marks = ticks(low, high, target=5)

    def y(v: float) -> float:
        return y0 + PANEL_H - (v - low) / (high - low) * PANEL_H

    step = marks[1] - marks[0] if len(marks) > 1 else 0.0
    for v in marks:
        parts.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" class="label">{_label(v, step)}</text>')
    with_ci = [(s, ci) for s, _, ci in bars if ci]
    if len(with_ci) > 1:  # the band: upper bounds left to right, then lower bounds back
        outline = [f"{x(s):.1f},{y(ci[1]):.1f}" for s, ci in with_ci] + [f"{x(s):.1f},{y(ci[0]):.1f}" for s, ci in reversed(with_ci)]
        parts.append(f'<polygon class="{css_class}-band" points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
    for s, ci in with_ci:
        xs, top, bottom = x(s), y(ci[1]), y(ci[0])
        parts.append(f'<g class="{css_class}-ci"><line x1="{xs:.1f}" y1="{bottom:.1f}" x2="{xs:.1f}" y2="{top:.1f}" stroke="{colour}" '
                     f'stroke-width="1.5"/><line x1="{xs - 4:.1f}" y1="{top:.1f}" x2="{xs + 4:.1f}" y2="{top:.1f}" stroke="{colour}"/>'
                     f'<line x1="{xs - 4:.1f}" y1="{bottom:.1f}" x2="{xs + 4:.1f}" y2="{bottom:.1f}" stroke="{colour}"/></g>')
    coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    parts.append(f'<polyline class="{css_class}" points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')

    def tip(s: float, v: float, ci: tuple[float, float, int] | None) -> str:
        return f"step {s:g}: {v:.4g}" + (f" (95% CI {ci[0]:.4g}–{ci[1]:.4g}, n = {ci[2]})" if ci else "")

    parts.extend(f'<circle class="{css_class}-point" cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                 f'<title>{escape(tip(s, v, ci))}</title></circle>' for s, v, ci in bars)
    return "".join(parts)


def _interval(point: Mapping[str, Any]) -> tuple[float, float, int] | None:
    low, high = point.get("ci_low"), point.get("ci_high")
    if low is None or high is None or low != low or high != high:
        return None
    return float(low), float(high), int(point.get("n") or 0)


def curve_svg(card: TuneCard) -> str:
    """Train loss (top) and held-out metric (bottom) against the optimiser step, best and stop steps marked."""
    data = card.data
    losses = [(float(p["step"]), float(p["loss"])) for p in data.get("train_loss", []) if p.get("loss") is not None]
    kept = [p for p in data.get("eval_curve", []) if p.get(card.metric) is not None and p[card.metric] == p[card.metric]]
    evals = [(float(p["step"]), float(p[card.metric])) for p in kept]
    intervals = [_interval(p) for p in kept]
    last = max([card.max_steps, *(s for s, _ in losses + evals)])
    plot_w = WIDTH - LEFT - RIGHT

    def x(step: float) -> float:
        return LEFT + step / last * plot_w

    top2 = TOP + PANEL_H + GAP
    bottom = top2 + PANEL_H
    clamp = (0.0, 1.0) if all(0 <= v <= 1 for _, v in evals) else None
    sizes = sorted({ci[2] for ci in intervals if ci})
    title = f"selection {card.metric}" + (f", 95% CI (n = {', '.join(map(str, sizes))} items per evaluation)" if sizes else "")
    parts = [_panel(losses, x, TOP, "train loss (answer tokens)", LOSS_COLOUR, "train-loss", None),
             _panel(evals, x, top2, title, EVAL_COLOUR, "eval-curve", clamp, intervals)]
    for s in sorted({round(t) for t in ticks(0, last, target=7)}):
        parts.append(f'<line x1="{x(s):.1f}" y1="{bottom}" x2="{x(s):.1f}" y2="{bottom + 4}" stroke="#999"/>'
                     f'<text x="{x(s):.1f}" y="{bottom + 16}" class="tick">{s}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{bottom + 32}" class="axis-title">optimiser step</text>')
    best = data.get("best_step")
    if best is not None:
        parts.append(f'<line class="best-step" x1="{x(best):.1f}" y1="{TOP}" x2="{x(best):.1f}" y2="{bottom}" '
                     f'stroke="{BEST_COLOUR}" stroke-width="2" stroke-dasharray="5 3"><title>best step {best} (kept)</title></line>'
                     f'<text x="{x(best) + 4:.1f}" y="{top2 + 12}" font-size="11" fill="{BEST_COLOUR}">best {best}</text>')
    if card.stopped_early:
        stop = int(data.get("steps") or 0)
        parts.append(f'<rect class="not-run" x="{x(stop):.1f}" y="{TOP}" width="{x(last) - x(stop):.1f}" height="{bottom - TOP}" '
                     f'fill="#000" fill-opacity="0.05"/>'
                     f'<line class="stop-step" x1="{x(stop):.1f}" y1="{TOP}" x2="{x(stop):.1f}" y2="{bottom}" stroke="{STOP_COLOUR}" '
                     f'stroke-width="2"><title>stopped early at step {stop} of {last}</title></line>'
                     f'<text x="{x(stop) + 4:.1f}" y="{TOP + 12}" font-size="11" fill="{STOP_COLOUR}">early stop {stop}</text>')
    height = bottom + 40
    label = f"training curves: {len(losses)} loss points, {len(evals)} evaluations"
    return (f'<svg class="tune-curves" role="img" aria-label="{escape(label)}" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def tuning_facts(card: TuneCard) -> list[tuple[str, str]]:
    """What was tuned on what, selected how, and how the run ended (the report's and the viewer's card table)."""
    d = card.data
    ended = (f"stopped early at step {d.get('steps')} of {card.max_steps} (patience {d.get('config', {}).get('patience')})"
             if card.stopped_early else f"ran all {d.get('steps')} steps")
    best = d.get("best_metric")
    facts = [("base model", d.get("base_model")), ("kind", d.get("kind")), ("tasks", ", ".join(d.get("tasks", []))),
             ("templates", d.get("templates") if isinstance(d.get("templates"), str) else ", ".join(d.get("templates", []))),
             ("training items", d.get("train_items")), ("selection", _selection_text(d)), ("run", ended),
             ("best step", f"{d.get('best_step')} ({card.metric} = {'—' if best is None else f'{best:.4f}'})")]
    curve = d.get("eval_curve") or [{}]
    if curve[-1].get("ci_method"):
        facts.append(("95% CI", curve[-1]["ci_method"]))
    return [(k, str(v)) for k, v in facts]


def tuning_section(card: TuneCard) -> str:
    """A heading, what was tuned and how the run ended, and the curves."""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in tuning_facts(card))
    return (f"<section class='tuning'><h2>Tuning curves — {escape(card.folder.name)}</h2>"
            f"<p class='note'>{escape(card.folder)}</p><table class='plain tune-facts'><tbody>{rows}</tbody></table>"
            f"{curve_svg(card)}</section>")


def _selection_text(card: Mapping[str, Any]) -> str:
    """Which items chose the checkpoint, per task; older cards did not record it."""
    chosen = card.get("selection")
    if not chosen:
        return "not recorded (card written before selection records: the first items of the validation split, else of test)"
    return "; ".join(f"{task}: {sel.get('how', sel.get('split'))}" for task, sel in chosen.items())


def render_tuning(cards: Sequence[TuneCard], title: str = "harness tuning report") -> str:
    """A page with only tuning curves (``harness report --tune OUT``)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(tuning_section(c) for c in cards)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><h1>{escape(title)}</h1><p class='note'>generated {stamp}</p>{body}</body></html>\n")


def write_tuning_report(folders: Sequence[Path], path: Path) -> list[TuneCard]:
    """Write the curves of tuning output folders; each must hold a card."""
    cards = []
    for folder in folders:
        card = load_card(folder)
        if card is None:
            raise HarnessError(f"harness report --tune: '{folder}' holds no {CARD_JSON} (is it a `harness tune -o` folder?)")
        cards.append(card)
    write_atomic(path, [render_tuning(cards)])
    path.chmod(0o644)
    return cards
