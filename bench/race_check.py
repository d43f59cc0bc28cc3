"""Issue 21 acceptance: does ``harness run --until-decided`` reach the full comparison's decision, and at what fraction of
its requests? Reads a full run and a raced run of the same matrix from one database (bench/README.md records the figures).

    python bench/race_check.py --db results/race_acceptance/arc.db --full RUN --race RUN [--json]

Per task: the full run's cells ranked by their mean over every item (what the race's sequences, with population = the
evaluated items, are about) and ``compare``'s possibly-best set; the race's decision; whether the race's survivors hold the
full run's best cell (a winner: is it); whether every eliminated cell is worse than the cell that beat it on the full
items; whether the survivors are ``compare``'s possibly-best set on the full run and the eliminated cells its "worse" ones;
and item evaluations and requests, raced over full.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.analysis.compare import compare_runs
from harness.store import Store


def check(store: Store, full: str, raced: str) -> list[dict[str, Any]]:
    comparison = compare_runs(store, [full])
    requests = {c.cell_id: sum(x.requests for x in store.item_costs(full, c.cell_id)) for c in store.cells([full])}
    out = []
    for race in store.races([raced]):
        (ranking,) = [r for r in comparison.rankings if r.task == race.task]
        sign = 1.0 if race.higher_is_better else -1.0
        means = {rc.summary.cell.cell_id: rc.summary.interval.mean for rc in ranking.cells}
        labels = {rc.summary.cell.cell_id: rc.summary.label for rc in ranking.cells}
        best = max(means, key=lambda c: sign * means[c])
        tied = sorted(c for c in means if means[c] == means[best])
        survivors = [c.cell_id for c in race.cells if c.status != "eliminated"]
        wrong = [c.cell_id for c in race.cells if c.status == "eliminated" and not sign * (means[c.beaten_by or ""] - means[c.cell_id]) > 0]
        full_requests = sum(requests[c] for c in means)
        out.append({
            "task": race.task, "metric": race.metric, "reason": race.reason, "rounds": race.rounds, "round_items": race.round_items,
            "alpha": race.alpha, "margin": race.margin,
            "full_best": [labels[c] for c in tied], "full_best_mean": means[best],
            "full_may_be_best": [rc.summary.label for rc in ranking.best_set],
            "full_verdicts": {rc.summary.label: rc.verdict.code for rc in ranking.cells},
            "race_survivors": [labels[c] for c in survivors],
            "race_eliminated": [{"cell": labels[c.cell_id], "round": c.round, "items": c.items, "by": labels.get(c.beaten_by or "", c.beaten_by),
                                 "cs": c.difference, "full_mean": means[c.cell_id]} for c in race.cells if c.status == "eliminated"],
            "survivors_hold_the_full_best": any(c in survivors for c in tied),
            # compare's decision on the full run: the possibly-best set and the cells called worse
            "survivors_are_the_full_may_be_best_set": set(survivors) == {rc.summary.cell.cell_id for rc in ranking.best_set},
            "eliminated_are_the_full_worse_cells": {c.cell_id for c in race.cells if c.status == "eliminated"}
            == {rc.summary.cell.cell_id for rc in ranking.cells if rc.verdict.code == "worse"},
            "winner_is_the_full_best": race.reason == "winner" and survivors[0] in tied,
            "eliminations_wrong_on_the_full_items": [labels[c] for c in wrong],
            "item_evaluations": race.evaluations, "full_item_evaluations": race.population * len(race.cells),
            "evaluation_fraction": race.evaluations / (race.population * len(race.cells)),
            "requests": race.requests, "full_requests": full_requests, "request_fraction": race.requests / full_requests,
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--full", required=True, help="the run of every item")
    parser.add_argument("--race", required=True, help="the --until-decided run of the same matrix")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store = Store.open_read_only(args.db)
    rows = check(store, store.resolve_run(args.full), store.resolve_run(args.race))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['task']} ({r['metric']}, alpha {r['alpha']:g}, margin {r['margin']}, rounds of {r['round_items']}): race {r['reason']} after "
              f"{r['rounds']} rounds; survivors {', '.join(r['race_survivors'])}")
        print(f"  full run: best {', '.join(r['full_best'])} ({r['full_best_mean']:.3f}); compare's may-be-best set: "
              f"{', '.join(r['full_may_be_best'])}")
        print(f"  same decision: survivors hold the full best: {r['survivors_hold_the_full_best']}; winner is it: {r['winner_is_the_full_best']}; "
              f"eliminations wrong on the full items: {r['eliminations_wrong_on_the_full_items'] or 'none'}; survivors = compare's "
              f"may-be-best set: {r['survivors_are_the_full_may_be_best_set']}; eliminated = its worse cells: {r['eliminated_are_the_full_worse_cells']}")
        for e in sorted(r["race_eliminated"], key=lambda e: e["round"]):
            print(f"  out at round {e['round']} ({e['items']} items): {e['cell']} (full {e['full_mean']:.3f}) by {e['by']}")
        print(f"  item evaluations {r['item_evaluations']:,} of {r['full_item_evaluations']:,} ({r['evaluation_fraction']:.1%}); "
              f"requests {r['requests']:,} of {r['full_requests']:,} ({r['request_fraction']:.1%})")


if __name__ == "__main__":
    main()
