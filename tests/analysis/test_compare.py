"""Ranking, rank groups, Holm, spread and rank stability on real runs of a scripted backend
whose skill is known (tests/decide_support.py), plus the compare/show CLI and the Python API."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import harness
from harness.analysis.compare import (
    compare_runs,
    find_cell,
    item_diff,
    spreads,
    stability,
    summarize,
)
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.decide_support import toy_task
from tests.helpers import cli


def _run(tmp_path: Path, db: Path, models: list[str], shots: list[int] = [0], rows: int = 120) -> str:
    tasks = tmp_path / "tasks"
    if not (tasks / "toy").exists():
        toy_task(tasks, rows=rows)
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)], models=models, shots=shots)
    return run_experiment(spec, Store(db), show_progress=False).run_id


@pytest.fixture
def ranked_run(tmp_path: Path, db_path: Path) -> str:
    return _run(tmp_path, db_path, ["skilled:0.9", "skilled:0.85", "skilled:0.3"])


def test_possibly_best_set_follows_known_skill(ranked_run: str, db_path: Path) -> None:
    comp = compare_runs(Store(db_path), [ranked_run])
    (ranking,) = comp.rankings
    assert ranking.metric == "acc" and ranking.higher_is_better
    by_model: dict[str, list] = {}
    for rc in ranking.cells:
        by_model.setdefault(rc.summary.cell.model, []).append(rc)
    best = ranking.cells[0]
    assert best.summary.cell.model in ("skilled:0.9", "skilled:0.85") and best.vs_best is None and best.may_be_best
    assert best.verdict.code == "best"
    # the 0.9 and 0.85 models are not told apart on 120 items; the 0.3 model is far worse, and named so
    assert all(rc.may_be_best and rc.verdict.code == "inconclusive" for m in ("skilled:0.9", "skilled:0.85") for rc in by_model[m][1:])
    assert all(not rc.may_be_best and rc.verdict.code == "worse" and rc.p_adjusted < 0.001 for rc in by_model["skilled:0.3"])
    assert all(rc.beaten_by is not None and rc.beaten_by.cell.model != "skilled:0.3" for rc in by_model["skilled:0.3"])
    assert all(rc.vs_best.test == "tango-score" for rc in ranking.cells[1:])
    # ranks are positions, best first, means non-increasing
    means = [rc.summary.interval.mean for rc in ranking.cells]
    assert means == sorted(means, reverse=True) and [rc.rank for rc in ranking.cells] == list(range(1, 7))
    # adjusted p-values are never below the pair's own
    assert all(rc.p_adjusted >= rc.vs_best.p_value for rc in ranking.cells[1:])
    # a pair's interval excludes 0 exactly when its own p is below 1 - confidence
    assert all((rc.vs_best.p_value < 0.05) == (rc.vs_best.diff.high < 0 or rc.vs_best.diff.low > 0) for rc in ranking.cells[1:])
    # inconclusive verdicts say what the comparison could detect
    assert all("MDE" in rc.verdict.detail for rc in ranking.cells if rc.verdict.code == "inconclusive")
    assert not any("lack of data" in w for w in comp.warnings)


def test_paired_counts_and_dropped_items(ranked_run: str, db_path: Path) -> None:
    store = Store(db_path)
    # remove 7 items from one cell: its comparison must say so and pair only the rest
    cell = store.cells([ranked_run])[-1]
    store.db.execute("DELETE FROM items WHERE run_id = ? AND cell_id = ? AND position < 7", (ranked_run, cell.cell_id))
    comp = compare_runs(store, [ranked_run])
    (target,) = [rc for rc in comp.rankings[0].cells if rc.summary.cell.cell_id == cell.cell_id]
    assert target.summary.n == 113 and target.vs_best.n == 113
    assert target.vs_best.dropped == {"only in B": 7}
    assert target.vs_best.wins + target.vs_best.ties + target.vs_best.losses == 113
    assert any("7 item(s) not scored in every cell" in w for w in comp.warnings)


def test_spread_and_rank_stability(ranked_run: str, db_path: Path) -> None:
    summaries = summarize(Store(db_path), [ranked_run])
    spread = {s.setting: s for s in spreads(summaries)}
    assert set(spread) == {"skilled:0.9 · 0-shot", "skilled:0.85 · 0-shot", "skilled:0.3 · 0-shot"}
    s = spread["skilled:0.3 · 0-shot"]
    assert s.n_variants == 2 and s.min <= s.median <= s.max and s.range == pytest.approx(s.max - s.min)
    stab = stability(summaries)
    assert len(stab) == 3 and all(st.n_variants == 2 and st.tau in (-1.0, 0.0, 1.0) or st.tau != st.tau for st in stab)
    assert all(-1 <= st.ci_low <= st.ci_high <= 1 and st.n_items == 120 for st in stab)


def test_model_vs_model_across_prompt_variants(ranked_run: str, db_path: Path) -> None:
    comp = compare_runs(Store(db_path), [ranked_run])
    contrasts = {m.model_b: m for m in comp.models}
    assert set(contrasts) == {"skilled:0.85", "skilled:0.3"} and all(m.model_a == "skilled:0.9" for m in comp.models)
    far, near = contrasts["skilled:0.3"].result, contrasts["skilled:0.85"].result
    assert far.low > 0.3 and far.p_value < 0.05 and len(far.variants) == 2  # a better model on every prompt
    assert near.low < 0 < near.high  # two prompts say little about prompts in general: a wide interval
    assert comp.to_dict()["across_prompts"][0]["variants"].keys() == {"plain", "polite"}


def test_lower_is_better_metrics_rank_ascending(ranked_run: str, db_path: Path) -> None:
    from dataclasses import replace

    from harness.analysis.compare import ranked

    flipped = [replace(s, higher_is_better=False) for s in summarize(Store(db_path), [ranked_run])]
    order = ranked(flipped)["toy"]
    assert order[0].cell.model == "skilled:0.3"


def test_item_diff_lists_disagreements(ranked_run: str, db_path: Path) -> None:
    store = Store(db_path)
    cells = {(c.model, c.prompt): c for c in store.cells([ranked_run])}
    a, b = cells[("skilled:0.9", "plain")], cells[("skilled:0.3", "plain")]
    metric, diffs, shared = item_diff(store, a, b)
    assert metric == "acc" and shared == 120
    scores = summarize(store, [ranked_run])
    sa = next(s for s in scores if s.cell == a).scores
    sb = next(s for s in scores if s.cell == b).scores
    assert {d.item_id for d in diffs} == {i for i in sa if sa[i] != sb[i]}
    assert all(d.prompt_a.endswith("A:") and "(choice" in d.response_a for d in diffs)
    assert find_cell(store, a.cell_id[:6]) == a and find_cell(store, f"{ranked_run}:{b.cell_id}") == b
    with pytest.raises(HarnessError, match="no cell"):
        find_cell(store, "zzzz")


def test_compare_cli_json_csv_and_table(ranked_run: str, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("compare", "--db", db_path, "--json") == 0
    rows = json.loads(capsys.readouterr().out)  # a list of cell rows, best first
    assert [c["rank"] for c in rows] == list(range(1, 7)) and rows[0]["spread_range"] >= 0 and rows[0]["variants"] == 2
    assert cli("compare", "--db", db_path, "--json", "--full") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cells"] == rows
    assert {"may_be_best", "verdict", "p_adjusted", "diff_vs_best", "wins", "mde", "unscorable"} <= set(data["cells"][1])
    assert "group" not in data["cells"][1] and "p_holm" not in data["cells"][1]
    assert data["spread"] and data["rank_stability"]
    (best_set,) = data["best_sets"]
    assert len(best_set["pairs"]) == 15 and set(best_set["cells"]) == {c["cell_id"] for c in rows if c["may_be_best"]}
    assert cli("compare", "--db", db_path, "--csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6 and rows[0]["rank"] == "1" and rows[-1]["model"] == "skilled:0.3"
    assert cli("compare", "--db", db_path) == 0
    out = capsys.readouterr().out
    assert "p adj" in out and "may be best (95%)" in out and "prompt sensitivity" in out and "Kendall" in out
    assert "worse than" in out and "MDE" in out
    assert cli("compare", "--db", db_path, "--pairs") == 0
    assert "every pair, p adjusted over all 15 pairs" in capsys.readouterr().out


def test_show_diff_cli(ranked_run: str, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = {(c.model, c.prompt): c for c in Store(db_path).cells([ranked_run])}
    a, b = cells[("skilled:0.9", "plain")], cells[("skilled:0.3", "plain")]
    assert cli("show", "--db", db_path, "--diff", a.cell_id, b.cell_id, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shared_items"] == 120 and len(data["disagree"]) > 30
    assert cli("show", "--db", db_path, "--diff", a.cell_id, b.cell_id, "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "shared items disagree on acc" in out and "Q: t question" in out and "more (use --limit)" in out
    assert cli("show", "--db", db_path, "--diff", a.cell_id, "nope") == 2


def test_python_api(ranked_run: str, db_path: Path) -> None:
    frame = harness.load_results(db_path, run=ranked_run)
    assert len(frame) == 6 * 120
    assert {"item_id", "prompt_variant", "model", "score_acc", "score_acc_norm", "response"} <= set(frame.columns)
    assert frame.groupby("model")["score_acc"].mean()["skilled:0.3"] < 0.5
    comp = harness.compare(db_path, runs=[ranked_run])
    assert comp.rankings[0].cells[0].rank == 1 and len(comp.rows()) == 6
    assert comp.to_dict()["cells"] == comp.rows()


def test_metric_choice_and_unknown_metric(ranked_run: str, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    comp = compare_runs(Store(db_path), [ranked_run], metric="acc_norm")
    assert comp.rankings[0].metric == "acc_norm"
    assert cli("compare", "--db", db_path, "--metric", "acc_nrom") == 2
    assert "did you mean 'acc_norm'" in capsys.readouterr().err.lower()


def test_comparison_is_deterministic(ranked_run: str, db_path: Path) -> None:
    first = compare_runs(Store(db_path), [ranked_run], seed=3).to_dict()
    assert compare_runs(Store(db_path), [ranked_run], seed=3).to_dict() == first


def test_runs_with_other_seeds_count_as_few_shot_draws(tmp_path: Path, db_path: Path) -> None:
    toy_task(tmp_path / "tasks", rows=40)
    store = Store(db_path)
    runs = []
    for seed in (1, 2):
        spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=["scripted:m"], shots=[2],
                              selectors=["random"], seed=seed)
        runs.append(run_experiment(spec, store, show_progress=False).run_id)
    comp = compare_runs(store, runs)
    assert len(comp.rows()) == 4 and len(comp.spreads) == 2
    assert {sp.setting for sp in comp.spreads} == {f"scripted:m · 2-shot random · run {r}" for r in runs}
    (tau,) = comp.stability  # the two draws' variant orders, compared
    assert tau.n_variants == 2 and {tau.setting_a, tau.setting_b} == {sp.setting for sp in comp.spreads}
    assert all(row["variants"] == 2 for row in comp.rows())


def test_python_api_run_gives_the_same_results_as_the_runner(tmp_path: Path) -> None:
    """``harness.run`` takes a mapping (or a YAML path) of experiment fields; a second call resumes nothing and
    stores an identical, separately scored run when ``new``."""
    toy_task(tmp_path / "tasks", rows=30)
    fields = {"tasks": ["toy"], "tasks_dirs": [str(tmp_path / "tasks")], "models": ["skilled:0.7"]}
    db = tmp_path / "api.db"
    first = harness.run(fields, db)
    (tmp_path / "exp.yaml").write_text(f"tasks: [toy]\ntasks_dirs: ['{tmp_path / 'tasks'}']\nmodels: ['skilled:0.7']\n")
    second = harness.run(tmp_path / "exp.yaml", db, new=True)
    assert first.run_id != second.run_id and first.items_written == second.items_written == 60  # toy has 2 prompt variants
    frame = harness.load_results(db, run=[first.run_id, second.run_id])
    by_run = frame.groupby("run_id")["score_acc"].apply(list)
    assert by_run[first.run_id] == by_run[second.run_id]
    with pytest.raises(HarnessError, match="unknown key 'shot'"):
        harness.run({**fields, "shot": [1]}, db)


def test_metric_a_run_lacks_is_an_error_naming_its_metrics(ranked_run: str, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A known metric the run was never scored by: an error listing the run's metrics, not a row of zeros."""
    with pytest.raises(HarnessError, match=r"no cell scored by it; the metrics there: acc, acc_norm") as caught:
        compare_runs(Store(db_path), [ranked_run], metric="f1_macro")
    assert ranked_run in str(caught.value)
    assert cli("compare", "--db", db_path, "--metric", "exact_match") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --metric 'exact_match'") and "acc, acc_norm" in err and "Traceback" not in err


def test_unfinished_cell_is_marked_and_paired_on_shared_items(ranked_run: str, db_path: Path) -> None:
    """A cell with 30 of 120 items: its row says so (missing, n_planned), every pair is tested on the 90
    items all cells have, and the cell called best is the best on those items (no positive Δ vs best)."""
    store = Store(db_path)
    cell = next(c for c in store.cells([ranked_run]) if c.model == "skilled:0.3")
    store.db.execute("DELETE FROM items WHERE run_id = ? AND cell_id = ? AND position >= 90", (ranked_run, cell.cell_id))
    comp = compare_runs(store, [ranked_run])
    (ranking,) = comp.rankings
    assert ranking.n == 90
    row = next(r for r in comp.rows() if r["cell_id"] == cell.cell_id)
    assert row["missing"] == 30 and row["n_planned"] == 120 and row["n"] == 90
    assert all(rc.vs_best.n == 90 and rc.vs_best.diff.mean <= 0 for rc in ranking.cells[1:])
    assert any("unfinished: 30 of 120 planned items were never stored" in w and "paired" in w for w in comp.warnings)
    # the full cells keep their own score over all 120 items; only the comparison is on the shared 90
    assert all(rc.summary.n == 120 for rc in ranking.cells if rc.summary.cell.cell_id != cell.cell_id)


def test_several_runs_name_each_cells_run_and_count_a_repeated_cell_once(tmp_path: Path, db_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first = _run(tmp_path, db_path, ["skilled:0.9", "skilled:0.3"], rows=60)
    store = Store(db_path)
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=["skilled:0.9", "skilled:0.6"])
    second = run_experiment(spec, store, new=True, show_progress=False).run_id  # skilled:0.9's two cells again, identical ids
    comp = compare_runs(store, [first, second])
    (ranking,) = comp.rankings
    ids = [rc.summary.cell.cell_id for rc in ranking.cells]
    assert len(ids) == len(set(ids)) == 6  # 4 + 4 cells, the 2 stored in both runs once
    assert len(ranking.pairs()) == 15  # the corrections count 6 cells, not 8
    repeated = {c.cell_id for c in store.cells([first])} & {c.cell_id for c in store.cells([second])}
    assert len(repeated) == 2
    assert {r["run_id"] for r in comp.rows() if r["cell_id"] in repeated} == {first}  # the first named run's copy
    assert {r["run_id"] for r in comp.rows()} == {first, second}
    assert sum("compared once, with run " + first in w for w in comp.warnings) == 2
    assert cli("compare", "--db", db_path, first, second, "--resamples", "500") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"runs: 1 = {first}; 2 = {second}" in out and "the same cell" in out


def test_a_cell_id_repeated_with_another_model_content_is_two_evaluations(tmp_path: Path, db_path: Path) -> None:
    """The cell id names the model by its label; a second run whose model under that label is another
    model (a checkpoint retrained in place: another ``model_json``) must not be merged with the first."""
    first = _run(tmp_path, db_path, ["skilled:0.9", "skilled:0.3"], rows=60)
    store = Store(db_path)
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=["skilled:0.9", "skilled:0.6"])
    second = run_experiment(spec, store, new=True, show_progress=False).run_id
    repeated = {c.cell_id for c in store.cells([first])} & {c.cell_id for c in store.cells([second])}
    assert len(repeated) == 2
    with store.db:
        store.db.execute("UPDATE cells SET model_json = json_set(model_json, '$.content', 'retrained') WHERE run_id = ?", (second,))
    comp = compare_runs(store, [first, second])
    (ranking,) = comp.rankings
    assert len(ranking.cells) == 8  # nothing merged
    assert {(r["run_id"], r["cell_id"]) for r in comp.rows() if r["cell_id"] in repeated} == {(run, c) for run in (first, second) for c in repeated}
    assert not any("compared once" in w for w in comp.warnings)
