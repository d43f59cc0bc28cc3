"""`harness tune` end to end on a tiny random Gemma 3 (tests/tiny_gemma.py): the real HF backend,
peft and Trainer, with steps of a fraction of a second, so --full, a weighted multi-task / multi-template
mixture and early stopping are exercised in the fast suite."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.tune.card import CARD_JSON, CARD_MD
from harness.tune.train import TuneConfig, mixture, sources
from tests.helpers import MC_TEMPLATE, cli, write_task

FAST = ["--eval-limit", "4", "--quiet", "--json"]


def _tune(capsys: pytest.CaptureFixture[str], *args: object) -> dict:
    capsys.readouterr()
    assert cli("tune", *args, *FAST) == 0
    return json.loads(capsys.readouterr().out)


def test_full_fine_tuning_writes_a_checkpoint_that_harness_run_scores(tmp_path: Path, db_path: Path, tiny_gemma: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "full"
    card = _tune(capsys, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "--full", "-o", out,
                 "--steps", "3", "--eval-steps", "3", "--batch-size", "2", "--lr", "1e-2", "--patience", "0")
    assert card["kind"] == "full" and card["steps"] == 3 and not card["stopped_early"]
    assert card["device"] == "cpu" and card["precision"] == "float32"  # --full on CPU: float32 weights, no autocast
    assert {"config.json", "model.safetensors", "tokenizer.json", CARD_JSON, CARD_MD} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()
    before, after = load_file(str(tiny_gemma / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = [k for k in before if not before[k].equal(after[k])]
    assert any("layers.0.mlp" in k for k in changed) and any("layers.1.self_attn" in k for k in changed)  # every weight trains
    assert f"--tuned hf:{out}" in (out / CARD_MD).read_text()
    capsys.readouterr()
    assert cli("run", "--db", db_path, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{out}", "--limit", "5",
               "--quiet", "--json") == 0
    run = json.loads(capsys.readouterr().out)
    (cell,) = run["ranking"]
    assert run["items_written"] == 5 and cell["model"] == f"hf:{out}" and 0 <= cell["mean"] <= 1


def test_weighted_mixture_of_two_tasks_and_two_templates_trains_in_proportion(tmp_path: Path, tiny_gemma: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks"
    write_task(tasks, "toy", rows=6, fewshot_rows=10, spec={"data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl", "train": "fewshot.jsonl"},
                                                            "prompts": ["qa_plain", "instruct_statement"]},
               templates={"qa_plain": MC_TEMPLATE, "instruct_statement": "Answer the question.\n" + MC_TEMPLATE})
    mix = ["--task", "capitals", "--task", "toy", "--weight", "3", "--weight", "1", "--prompt", "qa_plain", "--prompt", "instruct_statement"]
    common = ["--tasks-dir", tasks, "--model", f"hf:{tiny_gemma}", "--steps", "20", "--batch-size", "4", "--eval-steps", "20", "--seed", "5"]
    card = _tune(capsys, *mix, *common, "-o", tmp_path / "mix")
    drawn = card["examples_by_source"]
    assert sum(drawn.values()) == 80 and set(drawn) == {"capitals/qa_plain", "capitals/instruct_statement", "toy/qa_plain", "toy/instruct_statement"}
    capitals = drawn["capitals/qa_plain"] + drawn["capitals/instruct_statement"]
    assert 48 <= capitals <= 72  # weight 3:1 -> expected 60 of 80 (binomial sd ~3.9)
    assert abs(drawn["toy/qa_plain"] - drawn["toy/instruct_statement"]) <= 10  # a task's weight is split evenly over its templates
    config = TuneConfig(tasks=("capitals", "toy"), task_weights=(3.0, 1.0), prompts=("qa_plain", "instruct_statement"),
                        tasks_dirs=(str(tasks),), seed=5, eval_limit=4)  # the holdout depends on the seed and --eval-limit
    assert Counter(e.source for e in mixture(sources(config), 80, seed=5)) == drawn  # the card records the seeded stream
    long = Counter(e.source for e in mixture(sources(config), 8000, seed=5))  # the same draw, long run: 3/8, 3/8, 1/8, 1/8
    assert all(abs(long[s] / 8000 - share) < 0.02 for s, share in
               {"capitals/qa_plain": 0.375, "capitals/instruct_statement": 0.375, "toy/qa_plain": 0.125, "toy/instruct_statement": 0.125}.items())
    # 4 items of each task (min(--eval-limit 4, 20% of train), at least 5) are held out for selection, never trained on
    assert card["train_items"] == 2 * 36 + 2 * 6 and card["steps"] == 20 and card["metric"] == "acc"
    assert [p["step"] for p in card["eval_curve"]] == [0, 20] and len(card["train_loss"]) == 2
    again = _tune(capsys, *mix, *common, "-o", tmp_path / "mix-again")
    assert again["examples_by_source"] == drawn and again["train_loss"] == card["train_loss"]  # seeded: same run twice


def test_early_stopping_ends_the_run_when_eval_stops_improving(tmp_path: Path, tiny_gemma: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stopped"
    # learning rate 0: the weights never move, so after the first in-training evaluation the metric
    # cannot improve and patience 2 must end the run at step 3 of 50
    card = _tune(capsys, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", out,
                 "--steps", "50", "--eval-steps", "1", "--batch-size", "2", "--lr", "0", "--patience", "2")
    assert card["stopped_early"] and card["steps"] == 3 and card["config"]["max_steps"] == 50
    assert card["best_step"] == 1
    assert [p["step"] for p in card["eval_curve"]] == [0, 1, 2, 3]
    assert len({p["acc"] for p in card["eval_curve"]}) == 1
    assert [p["step"] for p in card["train_loss"]] == [1, 2, 3]
    assert "steps: 3 of 50 (stopped early: no improvement in 2 evaluations); best step 1" in (out / CARD_MD).read_text()
    assert (out / "adapter_model.safetensors").is_file()


def test_unknown_target_module_fails_after_loading_and_before_training(tmp_path: Path, tiny_gemma: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bad"
    assert cli("tune", "--task", "capitals", "--model", f"hf:{tiny_gemma}", "-o", out, "--target-modules", "q_proj", "c_attn",
               "--steps", "2", "--quiet") == 2
    err = capsys.readouterr().err
    assert "unknown LoRA target module(s) c_attn" in err and "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in err
    assert "Traceback" not in err and not out.exists()  # no output folder: nothing was trained or written


# -- selection on items that are neither trained on nor scored by `harness ab` -------------------------------
def _record_scored_and_trained(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], set[str]]:
    """Item ids written to any store during tuning (= the selection evaluations) and item ids tokenised for training."""
    from harness.store.store import Store
    from harness.tune import train as tune_module

    scored: set[str] = set()
    trained: set[str] = set()
    write_items, tokenize = Store.write_items, tune_module._tokenize

    def record_write(self: Store, run_id: str, items: object, cache: object) -> None:
        items = list(items)  # type: ignore[call-overload]
        scored.update(i.item_id for i in items)
        write_items(self, run_id, items, cache)  # type: ignore[arg-type]

    def record_tokenize(backend: object, examples: list) -> list:
        trained.update(e.item_id for e in examples)
        return tokenize(backend, examples)

    monkeypatch.setattr(Store, "write_items", record_write)
    monkeypatch.setattr(tune_module, "_tokenize", record_tokenize)
    return scored, trained


def test_selection_without_a_validation_split_is_a_train_holdout_never_test(tmp_path: Path, tiny_gemma: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Reproducer: capitals has no validation split; tuning used to select the checkpoint on the first test items,
    which `harness ab` then scores. Selection must be a seeded holdout of train, never trained on, never test."""
    from harness.tasks.task import find_task

    scored, trained = _record_scored_and_trained(monkeypatch)
    out = tmp_path / "holdout"
    card = _tune(capsys, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", out, "--steps", "2",
                 "--eval-steps", "1", "--batch-size", "4", "--lr", "1e-3", "--patience", "0")
    task = find_task("capitals")
    test_ids, train_ids = {i.id for i in task.items("test")}, {i.id for i in task.items("train")}
    assert scored and not scored & test_ids, f"selection scored test items: {sorted(scored & test_ids)}"
    assert scored <= train_ids and trained and not scored & trained  # selection items come from train and are never trained on
    selection, training = card["selection"]["capitals"], card["training"]["capitals"]
    assert card["eval_split"] == {"capitals": "train holdout"}
    assert selection["split"] == "train holdout" and selection["n"] == 4 == len(scored)  # min(--eval-limit 4, 20% of 40)
    assert selection["how"] == "train holdout: 4 of 40 items, seed 1234"
    assert set(selection["item_ids"]) == scored
    assert set(training["item_ids"]) == train_ids - scored and trained <= set(training["item_ids"]) and training["n"] == 36
    assert len(selection["content_sha256"]) == 4 and len(training["content_sha256"]) == 36
    assert card["train_items"] == 36
    md = (out / CARD_MD).read_text()
    assert "train holdout: 4 of 40 items, seed 1234" in md and "validation" not in md.split("| step")[0]
    # `harness ab`'s overlap check reads this card: the test split is clean, the train split is not
    from harness.backends import ModelSpec
    from harness.core.errors import HarnessError
    from harness.runner.spec import ExperimentSpec
    from harness.tune.overlap import check_overlap

    tuned = ModelSpec(model=str(tiny_gemma), adapter=str(out))
    clean = check_overlap(ExperimentSpec(tasks=["capitals"], prompts=["qa_plain"]), tuned, allow=False)
    assert clean.scored == 171 and not clean.blocking
    with pytest.raises(HarnessError, match=r"capitals: 4 of 40 scored items have the ids of the items that selected"):
        check_overlap(ExperimentSpec(tasks=["capitals"], prompts=["qa_plain"], split="train"), tuned, allow=False)
    # the holdout depends on the seed only (not on steps or templates): the same seed holds out the same items
    again = _tune(capsys, "--task", "capitals", "--prompt", "instruct_statement", "--model", f"hf:{tiny_gemma}", "-o", tmp_path / "b",
                  "--steps", "1", "--eval-steps", "1", "--batch-size", "2", "--patience", "0")
    assert again["selection"]["capitals"]["item_ids"] == selection["item_ids"]
    other = _tune(capsys, "--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", tmp_path / "c",
                  "--steps", "1", "--eval-steps", "1", "--batch-size", "2", "--patience", "0", "--seed", "7")
    assert other["selection"]["capitals"]["item_ids"] != selection["item_ids"]
    assert other["selection"]["capitals"]["how"] == "train holdout: 4 of 40 items, seed 7"


def _toy_with_validation(tasks: Path) -> Path:
    folder = write_task(tasks, "toy", rows=6, fewshot_rows=12, templates={"qa_plain": MC_TEMPLATE},
                        spec={"data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl", "train": "fewshot.jsonl", "validation": "validation.jsonl"},
                              "prompts": ["qa_plain"]})
    rows = [json.dumps({"id": f"v{i}", "question": f"v question {i}?", "options": [f"yes {i}", f"no {i}", "maybe"], "answer": i % 3})
            for i in range(6)]
    (folder / "validation.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_a_mixture_selects_per_task_on_validation_or_a_train_holdout(tmp_path: Path, tiny_gemma: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """toy has a validation split (used, whole train trained on); capitals has none (train holdout). Each evaluation
    point records n and a 95% CI of the mean over the two tasks' cells."""
    _toy_with_validation(tmp_path / "tasks")
    scored, trained = _record_scored_and_trained(monkeypatch)
    out = tmp_path / "mix"
    card = _tune(capsys, "--tasks-dir", tmp_path / "tasks", "--task", "capitals", "--task", "toy", "--prompt", "qa_plain",
                 "--model", f"hf:{tiny_gemma}", "-o", out, "--steps", "2", "--eval-steps", "2", "--batch-size", "4", "--patience", "0")
    assert card["eval_split"] == {"capitals": "train holdout", "toy": "validation"}
    toy = card["selection"]["toy"]
    assert toy["split"] == "validation" and toy["item_ids"] == ["v0", "v1", "v2", "v3"] and toy["how"] == "validation split: first 4 of 6 items"
    assert card["training"]["toy"]["n"] == 12 and card["training"]["capitals"]["n"] == 36
    assert {i for i in scored if i.startswith("v")} == {"v0", "v1", "v2", "v3"} and not any(i.startswith("t") for i in scored)
    assert not scored & trained
    for point in card["eval_curve"]:
        assert point["n"] == 8 and point["ci_low"] <= point["acc"] <= point["ci_high"]
        assert "mean of 2 cells" in point["ci_method"] and len(point["cells"]) == 2
        assert point["acc"] == pytest.approx(sum(c["mean"] for c in point["cells"]) / 2)


def test_eval_points_carry_n_and_a_wilson_interval(tmp_path: Path, tiny_gemma: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.stats.basics import wilson

    out = tmp_path / "ci"
    args = ["--task", "capitals", "--prompt", "qa_plain", "--model", f"hf:{tiny_gemma}", "-o", out, "--steps", "2", "--eval-steps", "1",
            "--batch-size", "2", "--patience", "0", "--eval-limit", "6"]
    capsys.readouterr()
    assert cli("tune", *args, "--quiet") == 0
    printed = capsys.readouterr().out
    card = json.loads((out / CARD_JSON).read_text())
    assert [p["step"] for p in card["eval_curve"]] == [0, 1, 2]
    for point in card["eval_curve"]:
        expected = wilson(point["acc"] * 6, 6)
        assert point["n"] == 6 and point["ci_method"] == "wilson"
        assert (point["ci_low"], point["ci_high"]) == pytest.approx((expected.low, expected.high))
        assert f"step {point['step']:>5}  acc {point['acc']:.4f}  95% CI [{point['ci_low']:.4f}, {point['ci_high']:.4f}]  n=6" in printed
    assert "selection: capitals: train holdout: 6 of 40 items, seed 1234" in printed
    md = (out / CARD_MD).read_text()
    assert "| step | acc (selection) | 95% CI | n | train loss |" in md
    first = card["eval_curve"][0]
    assert f"| 0 | {first['acc']:.4f} | [{first['ci_low']:.4f}, {first['ci_high']:.4f}] | 6 |" in md
