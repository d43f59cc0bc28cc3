"""`harness ab`: a tuned model against its base on identical prompts and items.

Fast tests use scripted models of known skill; the slow one trains a real LoRA adapter
with peft on the embedded model and A/Bs it against its base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analysis.ab import ab_compare, run_pair
from harness.backends import ModelSpec
from harness.core.errors import HarnessError
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.decide_support import toy_task
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[2]


def test_ab_cli_reports_a_paired_verdict_and_reuses_runs(tmp_path: Path, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=80)
    args = ["ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--base", "skilled:0.4",
            "--tuned", "skilled:0.8", "--shots", "0", "2", "--quiet"]
    assert cli(*args, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"].startswith("tuned is better than base")
    (task,) = data["tasks"]
    assert task["outcome"] == "better" and task["test"].startswith("tango-score") and task["p_holm"] < 0.001
    # 2 prompts x {0, 2-shot} = 4 cells of the same 80 items: pooled with the ITEM as the unit, not 320 pairs
    assert len(task["cells"]) == 4 and task["n"] == 4 * 80 and task["units"] == 80
    assert task["unit"].startswith("80 items as units, 4 cell(s) each")
    assert task["tuned_wins"] > task["tuned_losses"] and task["diff"] > 0.2
    assert all(c["n"] == 80 for c in task["cells"])
    assert task["across_prompts"]["items"] == 80 and set(task["across_prompts"]["variants"]) == {
        "plain · 0-shot", "plain · 2-shot first_k", "polite · 0-shot", "polite · 2-shot first_k"}
    runs = [r.id for r in Store(db_path).runs()]
    assert len(runs) == 2 and {data["base_run"], data["tuned_run"]} == set(runs)
    # identical runs are reused: no new run, same numbers
    assert cli(*args, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert len(Store(db_path).runs()) == 2 and again["tasks"] == data["tasks"]
    # the terminal view prints the verdict and how to see the disagreeing items
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "verdict: tuned is better than base" in out and "harness show --diff" in out
    # and the diff command it suggests works
    assert cli("show", "--db", db_path, "--diff", *data["diff_commands"][0].split()[-2:], "--json") == 0
    diff = json.loads(capsys.readouterr().out)
    first = data["tasks"][0]["cells"][0]
    assert len(diff["disagree"]) == first["tuned_wins"] + first["tuned_losses"]


def test_ab_from_stored_runs_and_worse_model(tmp_path: Path, db_path: Path) -> None:
    toy_task(tmp_path / "tasks", rows=60)
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], prompts=["plain"])
    store = Store(db_path)
    base_run, tuned_run = run_pair(spec, ModelSpec(backend="skilled", model="0.9"), ModelSpec(backend="skilled", model="0.2"),
                                   store, show_progress=False)
    report = ab_compare(store, base_run, tuned_run)
    assert report.verdict.startswith("tuned is worse than base")
    close = run_pair(spec, ModelSpec(backend="skilled", model="0.9"), ModelSpec(backend="skilled", model="0.88"), store, show_progress=False)
    assert close[0] == base_run  # the base run is reused
    report = ab_compare(store, *close)
    assert report.verdict.startswith("inconclusive") and "MDE" in report.verdict  # never "no difference" without a margin
    wide = ab_compare(store, *close, margin=0.3)  # a margin nothing on 60 items can miss
    assert wide.tasks[0].verdict.code == "equivalent" and wide.verdict.startswith("tuned and base are equivalent within ±30.0")


def test_ab_user_errors(tmp_path: Path, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=5)
    base = ["ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--quiet"]
    assert cli(*base, "--base", "skilled:0.5", "--tuned", "skilled:0.5") == 2
    assert "same model" in capsys.readouterr().err
    assert cli(*base, "--tuned", "skilled:0.5", "--adapter", str(tmp_path)) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert cli("ab", "--db", db_path, "--base-run", "latest") == 2
    assert "both --base-run and --tuned-run" in capsys.readouterr().err
    with pytest.raises(HarnessError, match="no matching cells"):
        store = Store(db_path)
        spec_a = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], prompts=["plain"], models=["skilled:0.1"])
        spec_b = ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], prompts=["polite"], models=["skilled:0.2"])
        from harness.runner.execute import run_experiment

        ab_compare(store, run_experiment(spec_a, store, show_progress=False).run_id, run_experiment(spec_b, store, show_progress=False).run_id)


# -- a real LoRA adapter -----------------------------------------------------------------
def train_lora(model_dir: Path, out: Path, steps: int = 5) -> Path:
    """A few AdamW steps of LoRA (peft) on rendered capitals demonstrations; saves the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    rows = [json.loads(line) for line in (ROOT / "tasks" / "capitals" / "fewshot.jsonl").read_text().splitlines() if line.strip()]
    texts = [f"Question: {r['question']}\nAnswer: {r['choices'][r['answer']]}" for r in rows[:8]]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.mark.slow
def test_ab_real_lora_adapter_against_its_base(tmp_path: Path, db_path: Path, embedded_model: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    adapter = train_lora(embedded_model, tmp_path / "adapter")
    assert (adapter / "adapter_config.json").is_file()
    args = ["ab", "--db", db_path, "--adapter", adapter, "--task", "capitals", "--prompt", "qa_plain", "--limit", "30", "--quiet"]
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "verdict:" in out and "capitals" in out and "+" + str(adapter) in out
    assert cli(*args, "--json") == 0  # reuses both runs: no model call
    data = json.loads(capsys.readouterr().out)
    assert data["tuned"].endswith(f"+{adapter}") and data["base"] == "hf:gemma-3-270m"
    (task,) = data["tasks"]
    assert task["n"] == 30 and task["test"].startswith("tango-score") and 0 <= task["p_value"] <= 1
    assert task["tuned_wins"] + task["ties"] + task["tuned_losses"] == 30
    # the adapter really changed the model: the stored log-likelihoods differ
    store = Store(db_path)
    responses = {r.run_id: r.response for r in store.items([data["base_run"], data["tuned_run"]]) if r.position == 0}
    assert responses[data["base_run"]] != responses[data["tuned_run"]]
    assert len(store.runs()) == 2
    # the diff view lists exactly the items where the two disagree
    assert cli("show", "--db", db_path, "--diff", *data["diff_commands"][0].split()[-2:], "--json") == 0
    diff = json.loads(capsys.readouterr().out)
    assert len(diff["disagree"]) == task["tuned_wins"] + task["tuned_losses"]
    assert cli("show", "--db", db_path, "--diff", *data["diff_commands"][0].split()[-2:]) == 0
    assert "shared items disagree on acc" in capsys.readouterr().out


def test_ab_html_report_shows_the_terminal_verdict_with_the_same_numbers(tmp_path: Path, db_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The HTML of an A/B showed a generic ranking whose Δ had the opposite sign of ab's; now it
    shows the A/B rows themselves, and every number matches the terminal's."""
    import html
    import re

    toy_task(tmp_path / "tasks", rows=60)
    out_html = tmp_path / "ab.html"
    args = ["ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--base", "skilled:0.3",
            "--tuned", "skilled:0.8", "--quiet", "--margin", "0.05"]
    assert cli(*args, "--html", out_html) == 0
    terminal = capsys.readouterr().out
    page = out_html.read_text()  # the A/B page of harness view, as one file
    title = re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)
    assert html.unescape(re.sub("<.*?>", " ", title)).split() == "A/B: tuned = skilled:0.8 vs base = skilled:0.3 Δ = tuned − base".split()
    verdict = re.search(r"verdict:\s+(.+)", terminal).group(1).strip()
    assert html.unescape(re.search(r'<p class="verdict" id="ab-verdict">(.*?)</p>', page).group(1)).startswith(verdict[:60])
    rows = re.findall(r'<tr class="(?:pooled|cell)">(.*?)</tr>', page, re.S)
    (pooled,) = re.findall(r'<tr class="pooled">(.*?)</tr>', page, re.S)
    cells = [html.unescape(re.sub("<.*?>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", pooled, re.S)]
    assert cells[0] == "all 2 cells" and len(rows) == 4  # 2 cells, the pooled row, the across-prompt row
    for value in cells[1:6]:  # n, base, tuned, Δ [CI], p: each appears in the terminal table (Δ and its CI in two columns)
        assert all(part in terminal for part in value.split()), (value, terminal)
    delta = float(cells[4].split()[0])
    assert delta > 0  # tuned is better: Δ = tuned − base is positive, in both
    assert cli(*args, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert f"{100 * data['tasks'][0]['diff']:+.1f}" == cells[4].split()[0]
    # harness report --ab on the stored runs writes the same A/B page
    again = tmp_path / "again.html"
    assert cli("report", "--db", db_path, "--ab", data["base_run"], data["tuned_run"], "-o", again, "--margin", "0.05") == 0
    assert re.findall(r'<tr class="(?:pooled|cell)">(.*?)</tr>', again.read_text(), re.S) == rows


def test_a_degenerate_tuned_model_is_flagged_in_ab_and_compare(tmp_path: Path, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=30)
    args = ["ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--prompt", "plain", "--base", "skilled:0.5",
            "--tuned", "first_choice:x", "--quiet"]
    assert cli(*args, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert any("first_choice:x: the same answer" in f and "30 of 30 items (100%)" in f for f in data["flags"])
    assert cli(*args) == 0
    assert "flag:" in capsys.readouterr().out
    assert cli("compare", "--db", db_path, data["tuned_run"]) == 0
    assert "degenerate cell" in capsys.readouterr().out
