"""What the report knows of a ``harness tune`` run: its tuning card (``tune_card.json`` next to the
adapter or full model), found from the runs that evaluated the tuned model, and its facts table.

Why it is its own module: the curves come from a card, not from the results store, so the run and
A/B pages only gain a section. Two ways in (see docs/tuning.md): the run and A/B pages (and
``harness report`` of them) show the cards of tuned models in their runs; ``harness report --tune
OUT`` shows the cards alone. The curves are ``harness.report.plots.tuning_plots``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.store.store import Store
from harness.tune.card import TuneCard, load_card


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


def _selection_text(card: Mapping[str, Any]) -> str:
    """Which items chose the checkpoint, per task; older cards did not record it."""
    chosen = card.get("selection")
    if not chosen:
        return "not recorded (card written before selection records: the first items of the validation split, else of test)"
    return "; ".join(f"{task}: {sel.get('how', sel.get('split'))}" for task, sel in chosen.items())
