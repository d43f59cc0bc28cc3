"""``harness anchors``: item-efficient estimates (issue 21).

``harness anchors TASK --from RUN [RUN ...] -k K -o FILE`` fits a 2PL IRT model on the task's stored cells (each one a
respondent) and chooses K anchor items (a stratified random sample by the fitted item parameters); ``harness anchors
estimate [RUN ...] --anchors FILE`` estimates each cell's full-set score from its anchor items, with its interval, and
where the cell has every item too (a full run), the error and whether the interval covered it. ``harness run --anchors
FILE`` evaluates only the anchors and prints the same estimate. docs/compare.md, "Item-efficient estimates".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict

import yaml

from harness.analysis.anchors import CellEstimate, estimate_cells, fit_anchors, summary_row
from harness.core.errors import HarnessError
from harness.report.terminal import print_json
from harness.runner.anchors import AnchorsFile, load_anchors, write_anchors
from harness.store import Store


def cmd_anchors(args: argparse.Namespace) -> int:
    if args.words[0] == "estimate":
        return _estimate(args, args.words[1:])
    if len(args.words) > 1:
        raise HarnessError(f"harness anchors: one TASK, got {' '.join(args.words)} (or: harness anchors estimate RUN ... --anchors FILE)")
    return _fit(args, args.words[0])


def _fit(args: argparse.Namespace, task: str) -> int:
    if not args.runs:
        raise HarnessError(f"harness anchors {task}: give the runs to fit on with --from RUN [RUN ...]")
    if args.k is None:
        raise HarnessError(f"harness anchors {task}: give the number of anchor items with -k K (e.g. -k 50)")
    if args.anchors:
        raise HarnessError("harness anchors TASK writes an anchors file (-o); --anchors reads one, for: harness anchors estimate RUN --anchors FILE")
    store = Store.open_read_only(args.db)
    runs = list(dict.fromkeys(store.resolve_run(r) for r in args.runs))
    anchors = fit_anchors(store, runs, task, args.k, args.seed, args.metric, args.prompt, args.exclude_prompt)
    if args.output:
        write_anchors(args.output, anchors)
    out = sys.stderr if not args.output and not args.json else sys.stdout
    if args.json:
        print_json({"output": str(args.output) if args.output else None, **anchors.model_dump(mode="json")})
        return 0
    if not args.output:  # the file itself on stdout, the summary beside it on stderr
        print(yaml.safe_dump(anchors.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")
    _print_fit(anchors, out)
    return 0


def _print_fit(anchors: AnchorsFile, out: object) -> None:
    fit = anchors.fit
    lines = [f"{anchors.task} — {anchors.metric}: 2PL fitted on {fit['respondents']} cells x {fit['items']} items "
             f"({'converged' if fit['converged'] else 'NOT converged'}, {fit['iterations']} iterations); "
             f"{anchors.k} anchors in {fit['strata']} strata (seed {anchors.seed})"]
    for c in anchors.fitted_on:
        selector = "" if c.selector == "none" else f" {c.selector}"
        lines.append(f"  {c.prompt} · {c.shots}-shot{selector} · {c.model}  ({c.run}): {c.score:.3f} on {c.items} items, ability {c.ability:+.2f}")
    lines.append("  the interval of an estimate holds over the draw of the anchors whether or not the model fits; "
                 "the model only narrows it (docs/compare.md)")
    print("\n".join(lines), file=out)  # type: ignore[call-overload]


def _estimate(args: argparse.Namespace, run_refs: Sequence[str]) -> int:
    if not args.anchors:
        raise HarnessError("harness anchors estimate: give the anchors file with --anchors FILE (written by harness anchors TASK -o FILE)")
    if args.runs or args.k is not None or args.output:
        raise HarnessError("harness anchors estimate RUN ... --anchors FILE takes no --from, -k or -o (those fit anchors: harness anchors TASK)")
    if not 0 < args.confidence < 1:
        raise HarnessError(f"--confidence must be in (0, 1), got {args.confidence}")
    anchors = load_anchors(args.anchors)
    store = Store.open_read_only(args.db)
    runs = list(dict.fromkeys(store.resolve_run(r) for r in (run_refs or ["latest"])))
    rows = estimate_cells(store, runs, anchors, args.confidence, args.prompt)
    fitted = {(c.run, c.cell) for c in anchors.fitted_on}
    if args.json:
        print_json(anchors_json(anchors, rows))
        return 0
    print_estimates(anchors, rows, fitted)
    return 0


def print_estimates(anchors: AnchorsFile, rows: Sequence[CellEstimate], fitted: set[tuple[str, str]] | None = None) -> None:
    """The estimate table (also printed by harness run --anchors)."""
    conf = f"{rows[0].confidence:.0%}" if rows else "95%"
    print(f"{anchors.task} — {anchors.metric}: full-set estimate from {anchors.k} of {len(anchors.items)} items "
          f"(2PL anchors, model-assisted estimator; {conf} interval)")
    width = max(len(r.respondent) for r in rows)
    has_full = any(r.full is not None for r in rows)
    head = f" {'cell':<{width}}  {'estimate [CI]':>19}  {'IRT only':>8}  {'anchors':>7}"
    print(head + (f"  {'full set':>8}  {'error':>6}  covered" if has_full else ""))
    for r in rows:
        line = f" {r.respondent:<{width}}  {100 * r.estimate:5.1f} [{100 * r.low:5.1f},{100 * r.high:5.1f}]  {100 * r.irt:8.1f}  {100 * r.stratified:7.1f}"
        if r.full is not None:
            err = r.error or 0.0
            line += f"  {100 * r.full:8.1f}  {100 * err:+6.1f}  {'yes' if r.covered else 'NO'}"
        print(line)
    s = summary_row(rows)
    if s["checked"]:
        print(f"  checked against the full set on {s['checked']} cell(s): mean |error| {100 * (s['mae'] or 0):.1f} points, "
              f"RMSE {100 * (s['rmse'] or 0):.1f} (IRT only {100 * (s['rmse_irt'] or 0):.1f}, anchors' stratified mean "
              f"{100 * (s['rmse_stratified'] or 0):.1f}), intervals covered {s['coverage']:.0%}")
    if fitted:
        inside = [r for r in rows if (r.run, ",".join(r.cells)) in fitted and r.full is not None]
        if inside:
            print(f"  note: {len(inside)} of these cells were among those the model was fitted on: not a held-out check")
    print("  interval: over the seeded draw of the anchors within their strata, whether or not the IRT model fits (docs/compare.md)")



def anchored_estimates(store: Store, run_id: str) -> list[tuple[AnchorsFile, list[CellEstimate]]]:
    """For a run made with ``--anchors``: each file (as its config names it, checked to be the same anchors) and the
    full-set estimate of every cell of its task; empty for any other run."""
    out = []
    for task, entry in sorted(store.run_config(run_id).get("anchors", {}).items()):
        anchors = load_anchors(entry["file"])
        if anchors.identity() != entry["identity"]:
            raise HarnessError(f"run {run_id} evaluated the anchors of '{entry['file']}' for task '{task}' (identity {entry['identity']}), "
                               f"but the file now holds other anchors ({anchors.identity()}): estimate with the file it ran with")
        out.append((anchors, estimate_cells(store, [run_id], anchors)))
    return out


def anchors_json(anchors: AnchorsFile, rows: Sequence[CellEstimate]) -> dict[str, object]:
    return {"task": anchors.task, "metric": anchors.metric, "anchors": anchors.k, "items": len(anchors.items),
            "rows": [{**asdict(r), "error": r.error, "covered": r.covered} for r in rows], "summary": summary_row(rows)}
