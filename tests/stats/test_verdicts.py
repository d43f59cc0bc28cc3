"""Reproducers of the ways "is the difference real?" came out wrong (issue 14), on stored runs
built item by item, so each test knows the exact answer:

- corpus BLEU and macro-F1: Δ, its CI and p must be of the corpus statistic that ranks the cells
  (the old code tested the mean of sentence BLEU / per-item correctness: a BLEU gap of -26 showed
  as -10, and a macro-F1 ranking came with a Δ of the opposite sign);
- non-transitive rank groups: a cell may only be set apart by a cell that beats it significantly;
- NaN scores silently shrank a cell's n;
plus the verdict vocabulary (equivalent / inconclusive with items needed) and `harness plan`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from harness.analysis.compare import compare_runs
from harness.store import ItemRecord, Store, StoredCell
from tests.helpers import cli


def stored_run(store: Store, run_id: str, task: str, task_type: str, metric: str, cells: dict[str, list[dict]],
               labels: list[str] | None = None, model: str = "scripted:m") -> None:
    """A finished run whose cells (one per prompt name) hold exactly the given items."""
    config = {"spec": {}, "tasks": {task: {"labels": labels} if labels else {}}}
    store.create_run(run_id, run_id, config, {}, 0)
    for prompt, items in cells.items():
        cell_id = f"{run_id}-{prompt}"
        store.add_cell(StoredCell(run_id, cell_id, task, task_type, prompt, "sha", 0, "none", model, {}, [metric], len(items)))
        store.write_items(run_id, [
            ItemRecord(cell_id, item["id"], position, "prompt", None, [], item.get("target", 0), [], item.get("extracted"),
                       item["scores"], 0.0, 1, False, item.get("cluster"))
            for position, item in enumerate(items)
        ], {})
    store.finish_run(run_id)


def by_prompt(comp) -> dict:  # type: ignore[no-untyped-def]
    return {rc.summary.cell.prompt: rc for rc in comp.rankings[0].cells}


# -- corpus metrics: the ranked statistic is the tested statistic --------------------------------
def test_corpus_bleu_gap_is_tested_on_corpus_bleu_not_on_sentence_bleu(db_path: Path) -> None:
    short = [("the cat sat down", f"s{i}") for i in range(10)]
    long = [(" ".join(f"word{j}" for j in range(i, i + 30)), f"l{i}") for i in range(10)]
    garbage = "zz qq xx"
    cells: dict[str, list[dict]] = {"a": [], "b": []}
    hyps: dict[str, list[str]] = {"a": [], "b": []}
    refs = []
    for (ref, item), is_short in [*[(s, True) for s in short], *[(x, False) for x in long]]:
        refs.append(ref)
        for prompt, exact in (("a", is_short), ("b", not is_short)):
            pred = ref if exact else garbage
            sentence = sacrebleu.metrics.BLEU(effective_order=True).sentence_score(pred, [ref]).score / 100
            cells[prompt].append({"id": item, "target": [ref], "extracted": pred, "scores": {"bleu": sentence}})
            hyps[prompt].append(pred)
    store = Store(db_path)
    stored_run(store, "r1", "mt", "generate", "bleu", cells)
    corpus = {p: sacrebleu.corpus_bleu(hyps[p], [refs]).score / 100 for p in "ab"}
    sentence_gap = np.mean([x["scores"]["bleu"] for x in cells["a"]]) - np.mean([x["scores"]["bleu"] for x in cells["b"]])
    assert corpus["b"] - corpus["a"] > 0.5 and abs(sentence_gap) < 0.05  # the two statistics disagree wildly
    cells_out = by_prompt(compare_runs(store, ["r1"], resamples=500))
    assert cells_out["b"].rank == 1 and cells_out["b"].summary.interval.mean == pytest.approx(corpus["b"])
    vs = cells_out["a"].vs_best
    assert vs.diff.mean == pytest.approx(corpus["a"] - corpus["b"])  # Δ of corpus BLEU, not of sentence BLEU
    assert vs.diff.low <= vs.diff.mean <= vs.diff.high and vs.test == "paired-bca"
    assert vs.p_value < 0.05 and vs.diff.high < 0  # interval and test agree


def test_macro_f1_ranking_and_its_delta_have_the_same_sign(db_path: Path) -> None:
    labels = ["happy", "sad"]
    golds = [0] * 32 + [1] * 8
    always = [0] * 40  # majority class: 80% correct, macro-F1 0.44
    balanced = [0] * 24 + [1] * 8 + [1] * 7 + [0]  # 77.5% correct, macro-F1 0.73
    cells = {
        name: [{"id": f"i{k}", "target": g, "extracted": labels[p], "scores": {"f1_macro": float(p == g)}}
               for k, (g, p) in enumerate(zip(golds, preds))]
        for name, preds in (("always", always), ("balanced", balanced))
    }
    store = Store(db_path)
    stored_run(store, "r1", "mood", "classification", "f1_macro", cells, labels)
    from sklearn.metrics import f1_score

    f1 = {name: f1_score([labels[g] for g in golds], [labels[p] for p in preds], labels=labels, average="macro")
          for name, preds in (("always", always), ("balanced", balanced))}
    out = by_prompt(compare_runs(store, ["r1"], resamples=500))
    assert out["balanced"].rank == 1  # ranked by macro-F1
    vs = out["always"].vs_best
    assert vs.diff.mean == pytest.approx(f1["always"] - f1["balanced"]) and vs.diff.mean < 0  # the same statistic, the same sign
    assert np.mean([x["scores"]["f1_macro"] for x in cells["always"]]) > np.mean([x["scores"]["f1_macro"] for x in cells["balanced"]])


# -- the possibly-best set is backed by a named witness --------------------------------------------
PATTERNS = {(1, 1, 1): 150, (1, 1, 0): 12, (1, 0, 1): 6, (1, 0, 0): 12, (0, 1, 1): 3, (0, 1, 0): 6, (0, 0, 1): 3, (0, 0, 0): 108}


def test_a_cell_is_set_apart_only_by_a_cell_that_beats_it(db_path: Path) -> None:
    """A 60%, B 57%, C 54% of 300 items; A vs C p = 0.001, A vs B and B vs C p = 0.10. Holm against
    the best put B with A and C in a lower group although C vs B is not significant. The new output
    claims only what a significant pair backs: C is worse than A; B and C are not ranked apart."""
    outcomes = [pattern for pattern, count in PATTERNS.items() for _ in range(count)]
    cells = {name: [{"id": f"i{k}", "scores": {"acc": float(o[j])}} for k, o in enumerate(outcomes)] for j, name in enumerate("ABC")}
    store = Store(db_path)
    stored_run(store, "r1", "t", "multiple_choice", "acc", cells)
    comp = compare_runs(store, ["r1"])
    out = by_prompt(comp)
    assert [out[x].summary.interval.mean for x in "ABC"] == pytest.approx([0.60, 0.57, 0.54])
    assert out["A"].may_be_best and out["B"].may_be_best and not out["C"].may_be_best
    assert out["C"].verdict.code == "worse" and out["C"].beaten_by.cell.prompt == "A"
    ranking = comp.rankings[0]
    pairs = {(p["a"].split(" ·")[0], p["b"].split(" ·")[0]): p["p_adjusted"] for p in ranking.pairs()}
    assert pairs[("A", "C")] < 0.05 and pairs[("B", "C")] >= 0.05 and pairs[("A", "B")] >= 0.05
    rows = {r["prompt"]: r for r in comp.rows()}
    assert rows["C"]["beaten_by"] == out["A"].summary.cell.cell_id and "group" not in rows["C"]


# -- nothing silently changes n ---------------------------------------------------------------------
def test_nan_scores_are_counted_and_scored_wrong_unless_excluded(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = [{"id": f"i{k}", "scores": {"acc": 1.0}} for k in range(50)]
    broken = [{"id": f"i{k}", "scores": {"acc": float("nan") if k < 10 else 1.0}} for k in range(50)]
    store = Store(db_path)
    stored_run(store, "r1", "t", "multiple_choice", "acc", {"good": good, "broken": broken})
    comp = compare_runs(store, ["r1"])
    out = by_prompt(comp)
    assert out["broken"].summary.n == 50 and out["broken"].summary.unscorable == 10
    assert out["broken"].summary.interval.mean == pytest.approx(0.8)  # a failure is not an answer: scored wrong
    assert any("10 of 50 items unscorable (scored as wrong)" in w for w in comp.warnings)
    excluded = by_prompt(compare_runs(store, ["r1"], unscorable="exclude"))
    assert excluded["broken"].summary.n == 40 and excluded["broken"].summary.interval.mean == 1.0
    assert cli("compare", "--db", db_path, "--unscorable", "exclude") == 0
    assert "10 of 50 items unscorable (excluded)" in capsys.readouterr().out


# -- verdict vocabulary -------------------------------------------------------------------------------
def test_equivalent_and_inconclusive_verdicts_need_a_margin_and_give_items(db_path: Path) -> None:
    rng = np.random.default_rng(0)
    pattern = rng.choice(4, size=2000, p=[0.65, 0.05, 0.05, 0.25])  # both right, only x, only y, both wrong
    x, y = np.isin(pattern, (0, 1)).astype(float), np.isin(pattern, (0, 2)).astype(float)  # 10% discordant, no difference
    cells = {"x": [{"id": f"i{k}", "scores": {"acc": v}} for k, v in enumerate(x)],
             "y": [{"id": f"i{k}", "scores": {"acc": v}} for k, v in enumerate(y)]}
    store = Store(db_path)
    stored_run(store, "r1", "t", "multiple_choice", "acc", cells)
    plain = compare_runs(store, ["r1"]).rankings[0].cells[1]
    assert plain.verdict.code == "inconclusive" and plain.verdict.resolution.items_needed is None
    wide = compare_runs(store, ["r1"], margin=0.03).rankings[0].cells[1]
    assert wide.verdict.code == "equivalent" and wide.verdict.p_equivalence < 0.05
    narrow = compare_runs(store, ["r1"], margin=0.002).rankings[0].cells[1]
    assert narrow.verdict.code == "inconclusive" and narrow.verdict.resolution.items_needed > 2000
    assert "would need about" in narrow.verdict.detail


def test_plan_from_a_pilot_run(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    x = (rng.random(300) < 0.6).astype(float)
    y = np.where(rng.random(300) < 0.2, 1 - x, x)
    store = Store(db_path)
    stored_run(store, "pilot", "t", "multiple_choice", "acc", {"x": [{"id": f"i{k}", "scores": {"acc": v}} for k, v in enumerate(x)],
                                                              "y": [{"id": f"i{k}", "scores": {"acc": v}} for k, v in enumerate(y)]})
    assert cli("plan", "--db", db_path, "--mde", "0.05", "--pilot", "pilot", "--json") == 0
    (plan,) = json.loads(capsys.readouterr().out)
    assert plan["kind"] == "binary" and plan["discordance"] == pytest.approx(np.mean(x != y))
    assert 400 < plan["items_detect"] < 900 and "pilot run pilot" in plan["source"]
    assert cli("plan", "--db", db_path, "--mde", "0.05", "--discordance", "0.2", "--cells", "6", "--json") == 0
    (six,) = json.loads(capsys.readouterr().out)
    assert six["items_detect"] > plan["items_detect"] and six["alpha"] == pytest.approx(0.05 / 15)
    assert cli("plan", "--db", db_path, "--mde", "0.05") == 2
    assert "give --pilot RUN" in capsys.readouterr().err


def test_declared_clusters_widen_intervals_and_are_reported(db_path: Path) -> None:
    rng = np.random.default_rng(4)
    easy = np.repeat(rng.random(20) < 0.5, 15)  # 20 passages of 15 questions: a passage is easy or hard as a whole
    a = np.where(rng.random(300) < 0.9, easy, 1 - easy).astype(float)
    b = np.where(np.repeat(rng.random(20) < 0.3, 15), 1 - easy, easy).astype(float)  # b gets whole passages wrong
    clusters = [f"passage{k // 15}" for k in range(300)]
    store = Store(db_path)
    for run, with_clusters in (("plain", False), ("clustered", True)):
        stored_run(store, run, "qa", "multiple_choice", "acc",
                   {name: [{"id": f"i{k}", "scores": {"acc": v[k]}, "cluster": clusters[k] if with_clusters else None}
                           for k in range(300)] for name, v in (("a", a), ("b", b))})
    plain, clustered = (compare_runs(store, [run]) for run in ("plain", "clustered"))
    wide, narrow = by_prompt(clustered)["a"].summary.interval, by_prompt(plain)["a"].summary.interval
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low) and "effective n" in wide.method
    assert clustered.rankings[0].clustered and clustered.rankings[0].units == 20
    assert clustered.rankings[0].cells[1].vs_best.difference.deff > 1.5
    assert any("items come in 20 clusters; design effect" in w for w in clustered.warnings)
