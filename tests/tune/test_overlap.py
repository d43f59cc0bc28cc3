"""Overlap between what a tuned model was trained / selected on and what `harness ab` scores
(harness/tune/overlap.py), and cells that give the same answer to almost every item (harness/analysis/degenerate.py).

No model: tuning cards are written the way `harness tune` writes them (ids and content hashes of the
training and selection items), runs use scripted backends."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.analysis.degenerate import (
    DEGENERATE_SHARE,
    degenerate_cells,
    dominant_answer,
)
from harness.backends import BACKENDS, ModelSpec
from harness.backends.scripted import ScriptedBackend
from harness.core.errors import HarnessError
from harness.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tasks.task import find_task
from harness.tune.card import CARD_JSON
from harness.tune.overlap import (
    NEAR_DUPLICATE,
    NGRAM,
    Entry,
    check_overlap,
    check_overlap_runs,
    find_overlaps,
    near_duplicate_score,
    normalise,
)
from harness.tune.train import content_hash
from tests.decide_support import Skilled  # noqa: F401  (registers skilled:<p>)
from tests.helpers import write_task


class Constant(ScriptedBackend):
    """``constant:TEXT`` prefers the continuation TEXT on every item (or generates TEXT)."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        value = -0.5 if request.continuation.strip() == self.spec.model else -4.0 - 0.1 * len(request.continuation)
        return LoglikelihoodResult(logprob=value, is_greedy=value > -2, n_tokens=1)

    def complete(self, request: GenerateRequest) -> GenerateResult:
        return GenerateResult(text=f" {self.spec.model}\n", n_tokens=2)


if "constant" not in BACKENDS:
    BACKENDS.add("constant", lambda: Constant)


def _tasks(root: Path, test_rows: int = 20, train_rows: int = 10) -> Path:
    write_task(root, "toy", rows=test_rows, fewshot_rows=train_rows,
               spec={"data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl", "train": "fewshot.jsonl"}})
    return root


def _card(folder: Path, tasks_dir: Path, training: dict[str, Sequence[str]], selection: dict[str, Sequence[str]],
          selection_split: str = "train holdout", task_names: Sequence[str] = ("toy",)) -> Path:
    """A tuning card as `harness tune` writes it: per task, ids and content hashes of training and selection items."""
    folder.mkdir(parents=True, exist_ok=True)
    source = "train" if selection_split == "train holdout" else selection_split

    def record(task: str, split: str, ids: Sequence[str]) -> dict[str, object]:
        items = {i.id: i for i in find_task(task, [tasks_dir]).items(split)}
        return {"split": split, "n": len(ids), "item_ids": list(ids), "content_sha256": [content_hash(items[i]) for i in ids]}

    card = {
        "kind": "lora", "base_model": "hf:gemma-3-270m", "tasks": list(task_names),
        "config": {"tasks": list(task_names), "tasks_dirs": [str(tasks_dir)], "data_dirs": [], "train_split": "train",
                   "eval_split": "validation", "eval_limit": 50},
        "training": {t: record(t, "train", ids) for t, ids in training.items()},
        "selection": {t: {**record(t, source, ids), "split": selection_split, "source_split": source,
                          "how": f"{selection_split}: {len(ids)} items"} for t, ids in selection.items()},
    }
    (folder / CARD_JSON).write_text(json.dumps(card))
    return folder


def test_no_overlap_gives_a_clean_report(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks")
    adapter = _card(tmp_path / "adapter", tasks, {"toy": [f"f{i}" for i in range(2, 10)]}, {"toy": ["f0", "f1"]})
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)])
    report = check_overlap(spec, ModelSpec(adapter=str(adapter)), allow=False)
    assert report.card == str(adapter) and report.scored == 20 and not report.overlaps and not report.blocking
    assert not report.flagged and any("none of its training or selection items is among" in line for line in report.lines())


def test_scoring_selection_or_training_items_is_an_error_naming_them(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks")
    adapter = _card(tmp_path / "adapter", tasks, {"toy": [f"f{i}" for i in range(2, 10)]}, {"toy": ["f0", "f1"]})
    tuned = ModelSpec(adapter=str(adapter))
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)], split="fewshot")  # ab on the items it was tuned on
    with pytest.raises(HarnessError) as error:
        check_overlap(spec, tuned, allow=False)
    message = str(error.value)
    assert "2 of 10 scored items" in message and "select" in message and "f0, f1" in message
    assert "8 of 10 scored items" in message and "train" in message and "f2" in message
    assert "--allow-overlap" in message and "other items" in message
    report = check_overlap(spec, tuned, allow=True)
    assert report.flagged and {(o.role, o.count) for o in report.blocking if o.match == "id"} == {("selection", 2), ("training", 8)}
    assert not [o for o in report.blocking if o.match == "content"]  # an id match is not repeated as a content match
    assert report.overlapping == 10 and report.blocking[0].ids == ("f0", "f1")
    assert any("--allow-overlap" in line and "flagged" in line for line in report.lines())
    assert report.to_dict()["flagged"] is True and report.to_dict()["overlapping"] == 10
    assert any("trained or selected on 10 of the 10 scored items" in line for line in report.lines())


def test_exact_content_under_another_id_is_overlap(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks")
    test_file = tasks / "toy" / "test.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    rows[3] = {**rows[3], "question": "f question 5?", "options": ["yes 5", "no 5", "maybe"]}  # a training item's content, new id t3
    test_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    adapter = _card(tmp_path / "adapter", tasks, {"toy": [f"f{i}" for i in range(2, 10)]}, {"toy": ["f0", "f1"]})
    with pytest.raises(HarnessError, match=r"1 of 20 scored items .*same content.*t3"):
        check_overlap(ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)]), ModelSpec(adapter=str(adapter)), allow=False)


def test_normalisation_and_the_near_duplicate_threshold() -> None:
    assert normalise("  What's the CAPITAL,  of\tFrance?! ") == "what s the capital of france"
    assert NGRAM == 8 and NEAR_DUPLICATE == 0.5
    train = "Which city is the capital of the Republic of France and also its largest city by population today"
    assert near_duplicate_score(train, train.upper() + "!!") == 1.0  # equal once normalised
    paraphrase = "Tell me: which city is the capital of the Republic of France and also its largest city by population?"
    assert near_duplicate_score(paraphrase, train) >= NEAR_DUPLICATE
    shares_a_phrase = ("In 1850 a traveller wrote that the capital of the Republic of France and also its largest city "
                       "was crowded, noisy and expensive, unlike any market town he had seen in the provinces before")
    assert 0 < near_duplicate_score(shares_a_phrase, train) < NEAR_DUPLICATE  # one shared phrase is not a near-duplicate
    assert near_duplicate_score("What is the capital of Guernsey?", "What is the capital of Jersey?") == 0.0
    assert near_duplicate_score("Tell me the capital of France", "what is the capital of france") == 0.0  # short: equality only ...
    assert near_duplicate_score("What is the capital of France", "Quiz: what is the capital of France, please?") == 1.0  # ... or contained
    # the indexed search used on whole splits agrees with the pairwise score on every pair
    texts = [train, train.upper(), paraphrase, shares_a_phrase, "What is the capital of Guernsey?", "What is the capital of Jersey?",
             "Tell me the capital of France", "what is the capital of france", "Quiz: what is the capital of France, please?", "yes"]
    for i, scored in enumerate(texts):
        others = [Entry("t", f"x{j}", None, normalise(t)) for j, t in enumerate(texts) if j != i]
        found = {o.ids for o in find_overlaps({"training": others}, [Entry("s", "s0", None, normalise(scored))])}
        expected = any(near_duplicate_score(scored, t) >= NEAR_DUPLICATE for j, t in enumerate(texts) if j != i)
        assert bool(found) == expected, scored


def test_near_duplicates_are_warnings_not_errors(tmp_path: Path) -> None:
    root = tmp_path / "tasks"
    folder = write_task(root, "facts", rows=3, fewshot_rows=3, spec={"data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl", "train": "fewshot.jsonl"}})
    long_q = "Which city is the capital of the Republic of France and also its largest city by population today?"
    rows = [{"id": "tr0", "question": long_q, "options": ["Paris", "Lyon"], "answer": 0},
            {"id": "tr1", "question": "How many legs does a spider have?", "options": ["8", "6"], "answer": 0},
            {"id": "tr2", "question": "What colour is the sky on a clear day?", "options": ["blue", "green"], "answer": 0}]
    (folder / "fewshot.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tests = [{"id": "te0", "question": "Tell me: which city is the capital of the Republic of France and also its largest city by population?",
              "options": ["Paris", "Marseille"], "answer": 0},
             {"id": "te1", "question": "Name the largest planet of the solar system.", "options": ["Jupiter", "Mars"], "answer": 0},
             {"id": "te2", "question": "how many LEGS does a spider have", "options": ["eight", "six"], "answer": 0}]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in tests) + "\n")
    adapter = _card(tmp_path / "adapter", root, {"facts": ["tr0", "tr1"]}, {"facts": ["tr2"]}, task_names=("facts",))
    report = check_overlap(ExperimentSpec(tasks=["facts"], tasks_dirs=[str(root)]), ModelSpec(adapter=str(adapter)), allow=False)
    assert not report.blocking and not report.flagged
    (near,) = report.near_duplicates
    assert near.role == "training" and near.count == 2 and [e[0] for e in near.examples] == ["te0", "te2"]
    assert all("near-duplicate" in line for line in report.lines() if "te0" in line)


def test_a_card_from_before_selection_records_is_read_as_the_old_fallback(tmp_path: Path) -> None:
    """The audit case: an adapter tuned before the fix selected on the first --eval-limit test items of capitals
    (no validation split); A/B on 100 test items must name those 20 items."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / CARD_JSON).write_text(json.dumps({"kind": "lora", "tasks": ["capitals"], "config": {
        "tasks": ["capitals"], "tasks_dirs": [], "data_dirs": [], "train_split": "train", "eval_split": "validation", "eval_limit": 20}}))
    spec = ExperimentSpec(tasks=["capitals"], limit=100)
    with pytest.raises(HarnessError, match=r"20 of 100 scored items .*select.*cap-001") as error:
        check_overlap(spec, ModelSpec(adapter=str(folder)), allow=False)
    assert "inferred" in str(error.value)
    report = check_overlap(spec, ModelSpec(adapter=str(folder)), allow=True)
    assert [(o.role, o.match, o.count) for o in report.blocking] == [("selection", "id", 20)]
    assert report.blocking[0].ids == tuple(f"cap-{i:03d}" for i in range(1, 21))
    assert any("inferred" in note for note in report.notes)


def test_a_model_without_a_card_is_not_checked_but_says_so(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks")
    (tmp_path / "plain").mkdir()
    report = check_overlap(ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)]), ModelSpec(adapter=str(tmp_path / "plain")), allow=False)
    assert report.card is None and not report.overlaps and any("no tune_card.json" in n for n in report.notes)
    report = check_overlap(ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)]), ModelSpec(backend="skilled", model="0.5"), allow=False)
    assert report.card is None


def test_stored_runs_are_checked_from_their_item_ids(tmp_path: Path) -> None:
    from harness.analysis.ab import run_pair

    tasks = _tasks(tmp_path / "tasks")
    adapter = _card(tmp_path / "adapter", tasks, {"toy": [f"f{i}" for i in range(2, 10)]}, {"toy": ["f0", "f1"]})
    store = Store(tmp_path / "db.sqlite")
    base, tuned = ModelSpec(backend="scripted", model="base"), ModelSpec(backend="scripted", model="tuned", adapter=str(adapter))
    clean = run_pair(ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)]), base, tuned, store, show_progress=False)
    report = check_overlap_runs(store, *clean, allow=False)
    assert report.card == str(adapter) and report.scored == 20 and not report.overlaps
    dirty = run_pair(ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)], split="fewshot", prompts=["plain"]), base, tuned, store,
                     show_progress=False)
    with pytest.raises(HarnessError, match=r"(?s)2 of 10 scored items.*f0, f1.*--allow-overlap"):
        check_overlap_runs(store, *dirty, allow=False)
    # the task folder is gone: item ids are still compared, content checks are skipped and say so
    shutil.rmtree(tasks / "toy")
    report = check_overlap_runs(store, *dirty, allow=True)
    assert {(o.role, o.match, o.count) for o in report.blocking} == {("selection", "id", 2), ("training", "id", 8)}
    assert any("content" in n and "skipped" in n for n in report.notes)


# -- degenerate cells ------------------------------------------------------------------------------------------
def test_dominant_answer_and_the_threshold() -> None:
    assert DEGENERATE_SHARE == 0.9
    nine = {f"i{k}": "A" for k in range(9)} | {"i9": "B"}
    assert dominant_answer(nine) == ("A", 9, 10)
    eight = {f"i{k}": "A" for k in range(8)} | {"i8": "B", "i9": "C"}
    assert dominant_answer(eight) == ("A", 8, 10)
    assert dominant_answer({}) is None


def test_degenerate_cells_in_stored_runs(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    lettered = ("{% macro answer(choice, index) %} {{ 'ABC'[index] }}{% endmacro %}Q: {{ input }}\n"
                "{% for c in choices %}{{ 'ABC'[loop.index0] }}. {{ c }}\n{% endfor %}Answer:")
    write_task(tasks, "toy", rows=30, spec={"prompts": ["plain", "lettered"]},
               templates={"plain": "{% macro answer(choice, index) %} {{ choice }}{% endmacro %}Q: {{ input }}\nA:", "lettered": lettered})
    store = Store(tmp_path / "db.sqlite")
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tasks)], models=["constant:maybe", "constant:A", "skilled:0.9"])
    run = run_experiment(spec, store, show_progress=False).run_id
    found = {(d.model, d.prompt): d for d in degenerate_cells(store, [run])}
    # constant:maybe always picks the text 'maybe' (index 2 in every item) in the plain cell; with letters it ties
    # on every choice and picks the first: index 0 ('A') every time; constant:A picks ' A' in the lettered cell
    # skilled:<p> is scripted on choice texts: asked for letters it scores ' A', ' B', ' C' the same on every item and collapses too
    assert set(found) == {("constant:maybe", "plain"), ("constant:maybe", "lettered"), ("constant:A", "plain"), ("constant:A", "lettered"),
                          ("skilled:0.9", "lettered")}
    maybe = found[("constant:maybe", "plain")]
    assert maybe.share == 1.0 and maybe.count == maybe.n == 30 and maybe.answer == "maybe" and maybe.choice_index == 2
    letter = found[("constant:A", "lettered")]
    assert letter.answer == "A" and letter.choice_index == 0 and letter.task == "toy" and letter.run_id == run
    assert "the same answer 'A' on 30 of 30 items (100%)" in letter.line
    assert ("skilled:0.9", "plain") not in found  # a model that answers varies its answers
    assert degenerate_cells(store, [run], min_items=31) == []  # too few items to call it


def test_degenerate_generate_cells_use_the_extracted_answer(tmp_path: Path) -> None:
    folder = tmp_path / "tasks" / "gen"
    (folder / "prompts").mkdir(parents=True)
    (folder / "task.yaml").write_text("name: gen\ntype: generate\ndata: {test: test.jsonl}\ninput: '{{ q }}'\ntarget: '{{ a }}'\n"
                                      "prompts: [plain]\nmetrics: [exact_match]\ngeneration: {max_tokens: 4, stop: [\"\\n\"]}\n")
    (folder / "test.jsonl").write_text("\n".join(json.dumps({"id": f"g{i}", "q": f"{i}+1=", "a": str(i + 1)}) for i in range(12)) + "\n")
    (folder / "prompts" / "plain.jinja").write_text("{{ input }}")
    store = Store(tmp_path / "db.sqlite")
    run = run_experiment(ExperimentSpec(tasks=["gen"], tasks_dirs=[str(tmp_path / "tasks")], models=["constant:7", "scripted:x"]), store,
                         show_progress=False).run_id
    (cell,) = degenerate_cells(store, [run])
    assert cell.model == "constant:7" and cell.answer == "7" and cell.choice_index is None and cell.share == 1.0 and cell.n == 12
