"""`harness tune`: bad inputs fail before training (fast); a tiny real LoRA run plugs into `harness ab` (slow)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.tune.card import CARD_JSON, CARD_MD
from harness.tune.train import (
    Precision,
    TuneConfig,
    check_target_modules,
    curve_point,
    holdout_size,
    mixed_precision,
    mixture,
    sources,
    target_text,
)
from tests.helpers import cli, write_task


def _train_task(root: Path, templates: dict[str, str] | None = None, train_rows: int = 20) -> Path:
    folder = write_task(root, "toy", rows=12, spec={"data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl", "train": "fewshot.jsonl"}},
                        templates=templates, fewshot_rows=train_rows)
    return folder


def test_no_train_split_is_a_clear_error_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path / "tasks")  # test + fewshot only
    code = cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "out")
    assert code == 2
    err = capsys.readouterr().err
    assert "no 'train' split" in err and "fewshot, test" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_empty_target_is_a_clear_error_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = "{% macro answer(choice, index) %}{% endmacro %}Q: {{ input }}\nA:"
    _train_task(tmp_path / "tasks", {"plain": empty})
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "empty target" in err and "template 'plain'" in err and re.search(r"item 'f\d+'", err)
    assert not (tmp_path / "out").exists()


def test_unknown_target_module_names_the_real_layers() -> None:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(4, 4)
            self.up_proj = torch.nn.Linear(4, 4)

    check_target_modules(Tiny(), ("q_proj", "up_proj"))
    with pytest.raises(HarnessError, match=r"unknown LoRA target module\(s\) c_attn .*q_proj, up_proj"):
        check_target_modules(Tiny(), ("q_proj", "c_attn"))


def test_bad_weights_and_non_empty_output_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train_task(tmp_path / "tasks")
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--weight", "1", "--weight", "2", "-o", tmp_path / "o") == 2
    assert "one positive weight per task" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "full") == 2
    assert "not empty" in capsys.readouterr().err


def test_targets_are_the_gold_continuation_and_the_first_reference() -> None:
    config = TuneConfig(tasks=("capitals", "arithmetic"), prompts=(), train_split="fewshot")
    cap, ari = sources(config)
    item = cap.task.items("fewshot")[0]  # Guernsey, answer index 2
    ex = target_text(cap.task, cap.template, item)
    assert ex.target == " Saint Peter Port" and ex.prompt.endswith("Answer:") and not ex.stop
    ex = target_text(ari.task, ari.template, ari.items[0])
    assert ex.stop and ex.target.strip() == ari.items[0].target[0]


def test_mixture_is_seeded_and_follows_the_weights() -> None:
    config = TuneConfig(tasks=("capitals",), prompts=("qa_plain", "instruct_statement"))
    srcs = sources(config)
    assert [s.template.name for s in srcs] == ["qa_plain", "instruct_statement"]
    a, b = mixture(srcs, 400, seed=7), mixture(srcs, 400, seed=7)
    assert [(e.source, e.item_id) for e in a] == [(e.source, e.item_id) for e in b]
    assert [(e.source, e.item_id) for e in a] != [(e.source, e.item_id) for e in mixture(srcs, 400, seed=8)]
    counts = Counter(e.source for e in a)
    assert 150 < counts["capitals/qa_plain"] < 250
    # every item of a source is used before any repeats (32 of capitals' 40 train items: 8 are held out for selection)
    assert len(srcs[0].items) == 32
    first = [e.item_id for e in a if e.source == "capitals/qa_plain"][:32]
    assert len(set(first)) == 32 and set(first) == {i.id for i in srcs[0].items}
    held_out = {i.id for i in srcs[0].selection.items}
    assert not held_out & {e.item_id for e in a}  # the selection items are never drawn for training


def test_task_weights_skew_the_mixture(tmp_path: Path) -> None:
    _train_task(tmp_path / "tasks", train_rows=20)
    config = TuneConfig(tasks=("capitals", "toy"), task_weights=(3.0, 1.0), tasks_dirs=(str(tmp_path / "tasks"),))
    counts = Counter(e.source.split("/")[0] for e in mixture(sources(config), 800, seed=1))
    assert 540 < counts["capitals"] < 660 and counts["capitals"] + counts["toy"] == 800


def test_mixed_precision_follows_device_and_weights() -> None:
    """The GPU path (no GPU here): which autocast Trainer gets for each device / weight dtype."""
    assert mixed_precision("cpu", "float32", full=False, bf16_supported=False) == Precision()
    assert mixed_precision("cpu", "bfloat16", full=True, bf16_supported=False) == Precision()
    assert mixed_precision("cuda", "bfloat16", full=False, bf16_supported=True) == Precision(bf16=True)  # LoRA, GPU default
    assert mixed_precision("cuda", "float16", full=False, bf16_supported=False) == Precision(fp16=True)
    assert mixed_precision("cuda", "float32", full=True, bf16_supported=True) == Precision(bf16=True)  # --full: fp32 master weights
    assert mixed_precision("cuda:0", "float32", full=True, bf16_supported=False) == Precision(fp16=True)  # pre-Ampere: fp16 AMP
    with pytest.raises(HarnessError, match="--full with --dtype float16"):
        mixed_precision("cuda", "float16", full=True, bf16_supported=True)


def test_a_device_trainer_cannot_train_on_is_an_error_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train_task(tmp_path / "tasks")
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "out", "--device", "cuda:1") == 2
    assert "CUDA_VISIBLE_DEVICES" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_holdout_is_seeded_disjoint_and_sized() -> None:
    """capitals has no validation split: selection items are a seeded holdout of its 40 train items, never trained on."""
    assert holdout_size(40, None, 50) == 8 and holdout_size(40, None, 4) == 4 and holdout_size(40, None, None) == 8  # min(limit, 20%)
    assert holdout_size(12, None, 50) == 5  # at least a handful
    assert holdout_size(40, 10, 50) == 10 and holdout_size(40, 0.25, 50) == 10  # --holdout N, or a fraction
    (src,) = sources(TuneConfig(tasks=("capitals",), prompts=("qa_plain",)))
    train = {i.id for i in src.task.items("train")}
    chosen, kept = {i.id for i in src.selection.items}, {i.id for i in src.items}
    assert len(chosen) == 8 and len(kept) == 32 and chosen | kept == train and not chosen & kept
    assert src.selection.split == "train holdout" and src.selection.how == "train holdout: 8 of 40 items, seed 1234"
    assert not chosen & {i.id for i in src.task.items("test")}
    (same,) = sources(TuneConfig(tasks=("capitals",), prompts=("instruct_statement",)))
    assert [i.id for i in same.selection.items] == [i.id for i in src.selection.items]  # the seed alone decides
    (other,) = sources(TuneConfig(tasks=("capitals",), prompts=("qa_plain",), seed=99))
    assert {i.id for i in other.selection.items} != chosen
    (explicit,) = sources(TuneConfig(tasks=("capitals",), holdout=10))
    assert len(explicit.selection.items) == 10 and len(explicit.items) == 30


def test_train_too_small_to_hold_out_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train_task(tmp_path / "tasks", train_rows=8)  # no validation split, 8 train items
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "out", "--model", f"hf:{tmp_path / 'none'}") == 2
    err = capsys.readouterr().err
    assert "'toy'" in err and "8 items" in err and "validation" in err and "--holdout" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_selection_on_the_test_split_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train_task(tmp_path / "tasks", train_rows=20)
    assert cli("tune", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "-o", tmp_path / "out", "--eval-split", "test",
               "--model", f"hf:{tmp_path / 'none'}") == 2
    err = capsys.readouterr().err
    assert "'test'" in err and "harness ab" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def _summary(task: str, prompt: str, scores: list[float]):  # type: ignore[no-untyped-def]
    from harness.analysis.compare import CellSummary
    from harness.stats.basics import mean_interval
    from harness.store import StoredCell

    record = StoredCell("run", f"{task}-{prompt}", task, "multiple_choice", prompt, "sha", 0, "none", "m", {}, ["acc"], len(scores))
    return CellSummary(record, "acc", True, mean_interval(scores, True), {f"i{k}": v for k, v in enumerate(scores)})


def test_curve_point_has_n_and_a_95_percent_interval() -> None:
    from harness.stats.basics import wilson

    one = curve_point([_summary("a", "p", [1, 0, 1, 1, 0, 0, 1, 0, 0, 0])])
    w = wilson(4, 10)
    assert one["n"] == 10 and one["mean"] == 0.4 and (one["ci_low"], one["ci_high"]) == (w.low, w.high) and one["ci_method"] == "wilson"
    # several cells (tasks x templates): the mean of cell means, and an item bootstrap of it (items shared across a task's templates)
    cells = [_summary("a", "p", [1] * 15 + [0] * 5), _summary("a", "q", [1] * 10 + [0] * 10), _summary("b", "p", [0] * 8 + [1] * 2)]
    many = curve_point(cells)
    assert many["mean"] == pytest.approx((0.75 + 0.5 + 0.2) / 3) and many["n"] == 30  # 20 items of a, 10 of b
    assert many["ci_low"] < many["mean"] < many["ci_high"] and many["ci_high"] - many["ci_low"] < 0.5
    assert "mean of 3 cells" in many["ci_method"] and "bootstrap" in many["ci_method"]
    assert [c["n"] for c in many["cells"]] == [20, 20, 10] and many == curve_point(cells)  # seeded


@pytest.mark.slow
def test_tiny_lora_run_plugs_into_ab(tmp_path: Path, db_path: Path, embedded_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapter"
    args = ["tune", "--task", "capitals", "--prompt", "qa_plain", "-o", out, "--steps", "2", "--eval-steps", "1",
            "--batch-size", "2", "--eval-limit", "6", "--lr", "1e-3", "--quiet", "--json"]
    assert cli(*args) == 0
    card = json.loads(capsys.readouterr().out)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert card == json.loads((out / CARD_JSON).read_text()) and (out / CARD_MD).is_file()
    assert card["kind"] == "lora" and card["base_model"] == "hf:gemma-3-270m" and card["tasks"] == ["capitals"]
    assert card["train_items"] == 34 and card["config"]["lora_r"] == 8  # 40 train items, 6 (--eval-limit) held out for selection
    assert card["selection"]["capitals"]["how"] == "train holdout: 6 of 40 items, seed 1234"
    assert [p["step"] for p in card["eval_curve"]] == [0, 1, 2]
    assert all(0 <= p["acc"] <= 1 for p in card["eval_curve"]) and card["train_loss"]
    assert card["best_step"] in (1, 2) and not any(p.name.startswith(".tune-") for p in out.iterdir())
    ab = ["ab", "--db", db_path, "--adapter", out, "--task", "capitals", "--prompt", "qa_plain", "--limit", "6", "--quiet", "--json"]
    assert cli(*ab) == 0
    data = json.loads(capsys.readouterr().out)
    (task,) = data["tasks"]
    assert data["tuned"] == f"hf:gemma-3-270m+{out}" and task["n"] == 6 and 0 <= task["p_value"] <= 1
    assert "diff_ci_low" in task and task["diff_ci_low"] <= task["diff"] <= task["diff_ci_high"]
    # unknown target modules fail after loading the model but before any training step
    assert cli("tune", "--task", "capitals", "-o", tmp_path / "bad", "--target-modules", "c_attn", "--quiet") == 2
    assert "unknown LoRA target module(s) c_attn" in capsys.readouterr().err and not (tmp_path / "bad").exists()
