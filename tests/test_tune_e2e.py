"""`harness tune` end to end on a tiny random Gemma 3 (tests/tiny_gemma.py): the real HF backend,
peft and Trainer, with steps of a fraction of a second, so --full, a weighted multi-task / multi-template
mixture and early stopping are exercised in the fast suite."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.tune import CARD_JSON, CARD_MD, TuneConfig, mixture, sources
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
                        tasks_dirs=(str(tasks),))
    assert Counter(e.source for e in mixture(sources(config), 80, seed=5)) == drawn  # the card records the seeded stream
    long = Counter(e.source for e in mixture(sources(config), 8000, seed=5))  # the same draw, long run: 3/8, 3/8, 1/8, 1/8
    assert all(abs(long[s] / 8000 - share) < 0.02 for s, share in
               {"capitals/qa_plain": 0.375, "capitals/instruct_statement": 0.375, "toy/qa_plain": 0.125, "toy/instruct_statement": 0.125}.items())
    assert card["train_items"] == 2 * 40 + 2 * 10 and card["steps"] == 20 and card["metric"] == "acc"
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
