"""Every table the CLI prints fits 80 and 120 columns without cutting a value: rendered on a
realistic comparison (24 cells of one run plus a second run, long task / prompt / model names,
an unfinished cell, a cell stored in both runs), each value the JSON gives appears whole, no
ellipsis, no line past the width; wider consoles (and --wide) show more columns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.analysis.aggregates import GroupSummary
from harness.analysis.compare import compare_runs
from harness.report import aggregates as aggregates_report
from harness.report.ab import print_ab
from harness.report.terminal import Col, comparison_tables, fitted_table, pair_tables, print_table
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.stats.basics import Interval
from harness.store.store import Store
from tests.decide_support import unit  # noqa: F401  (registers the skilled backend)
from tests.helpers import MC_TEMPLATE, cli, write_task

TASK = "commonsense_reasoning_multiple_choice_long"
PROMPTS = {"instruction_first_with_explanation": MC_TEMPLATE,
           "polite_question_answer_format_v2": "Answer the question.\n{% for s in shots %}Q: {{ s.input }}\nA:{{ s.answer }}\n\n{% endfor %}"
                                               "Q: {{ input }}\nA:"}
MODELS = {"skilled:0.9": "hf:/root/.cache/harness/models/gemma-3-270m-q4_k_m-hf",
          "skilled:0.85": "hf:/root/.cache/harness/models/gemma-3-270m-it-q8_0-hf",
          "skilled:0.3": "openai:meta-llama/Llama-3.1-8B-Instruct-Turbo",
          "skilled:0.6": "vllm:/data/checkpoints/qwen2.5-0.5b-instruct-sft-step-1200"}
WIDTHS = (80, 120)
FAST = ["--resamples", "1000"]  # the tables, not the statistics, are under test


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """Run 1: 2 prompts x 3 models x 4 shot counts = 24 cells; run 2: two models at 0 shots, one of
    them the same cells as run 1's (stored twice), the other unfinished (15 of 40 items missing)."""
    root = tmp_path_factory.mktemp("terminal")
    tasks, db = root / "tasks", root / "results.db"
    write_task(tasks, TASK, rows=40, spec={"prompts": list(PROMPTS), "metrics": ["acc", "acc_norm"],
                                           "description": "A long free-text description of the task that has to wrap " * 3},
               templates=PROMPTS)
    store = Store(db)
    first = run_experiment(ExperimentSpec(tasks=[TASK], tasks_dirs=[str(tasks)], models=["skilled:0.9", "skilled:0.85", "skilled:0.3"],
                                          shots=[0, 1, 2, 3]), store, show_progress=False).run_id
    second = run_experiment(ExperimentSpec(tasks=[TASK], tasks_dirs=[str(tasks)], models=["skilled:0.9", "skilled:0.6"], shots=[0]),
                            store, show_progress=False, new=True).run_id
    unfinished = [c for c in store.cells([second]) if c.model == "skilled:0.6"][0]
    store.db.execute("DELETE FROM items WHERE run_id = ? AND cell_id = ? AND position >= 25", (second, unfinished.cell_id))
    for short, long in MODELS.items():  # the labels real runs have (paths, hub ids)
        store.db.execute("UPDATE cells SET model = ? WHERE model = ?", (long, short))
    store.db.commit()
    store.close()
    return db, tasks, first, second


def _render(width: int, draw: Any) -> str:
    out = Console(width=width, record=True, color_system=None)
    draw(out)
    return out.export_text()


def _fits(text: str, width: int) -> None:
    assert "…" not in text and "..." not in text
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long[:3]


def _words(text: str) -> set[str]:
    return set(re.split(r"\s+", text))


def test_comparison_tables_fit_and_show_every_value(runs: tuple[Path, Path, str, str]) -> None:
    db, _, first, second = runs
    comp = compare_runs(Store(db), [first, second], resamples=1000)
    (ranking,) = comp.rankings
    assert len(ranking.cells) == 26  # 24 + 4, the two cells stored in both runs counted once
    for width in WIDTHS:
        text = _render(width, lambda out: (comparison_tables(comp, out), pair_tables(comp, out)))
        _fits(text, width)
        words = _words(text)
        for rc in ranking.cells:  # every score, Δ and adjusted p of the table, whole
            assert f"{100 * rc.summary.interval.mean:.1f}" in words
            if rc.vs_best is not None:
                assert f"{100 * rc.vs_best.diff.mean:+.1f}" in words
                assert (f"{rc.p_adjusted:.3f}" if rc.p_adjusted >= 0.001 else "<0.001") in words
        for long in MODELS.values():  # long model labels whole, in the legend
            assert long in text
        assert "25/40" in words and "(unfinished)" in text and "unfinished (n = stored/planned)" in text
        assert f"runs: 1 = {first}; 2 = {second}" in re.sub(r"\s+", " ", text)
    narrow, wide = _render(80, lambda out: comparison_tables(comp, out)), _render(120, lambda out: comparison_tables(comp, out))
    assert "not shown at 80 columns: 95% CI, Δ CI; --wide shows every column" in re.sub(r"\s+", " ", narrow)
    assert "not shown at 120 columns: 95% CI" not in re.sub(r"\s+", " ", wide)
    for rc in ranking.cells[1:]:  # the intervals appear at 120, whole
        interval = f"[{100 * rc.vs_best.diff.low:+.1f},{100 * rc.vs_best.diff.high:+.1f}]"
        assert interval in _words(wide) and interval not in narrow


def test_cli_tables_fit_80_columns(runs: tuple[Path, Path, str, str], capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db, tasks, first, second = runs
    for width in WIDTHS:
        monkeypatch.setenv("COLUMNS", str(width))
        for argv in (["compare", "--db", db, first, second, "--pairs", *FAST], ["draws", "--db", db, first],
                     ["sensitivity", "--db", db, first, *FAST], ["tasks", "--tasks-dir", tasks]):
            assert cli(*argv) == 0, argv
            out = capsys.readouterr().out
            _fits(out, width)
            assert out.strip()
        assert cli("compare", "--db", db, first, "--json", *FAST) == 0
        rows = json.loads(capsys.readouterr().out)
        assert cli("compare", "--db", db, first, *FAST) == 0
        words = _words(capsys.readouterr().out)
        assert all(f"{100 * r['mean']:.1f}" in words for r in rows)
    monkeypatch.setenv("COLUMNS", "80")
    assert cli("compare", "--db", db, first, "--wide", *FAST) == 0
    out = capsys.readouterr().out
    assert "Δ CI" in out and "95% CI" in out and "…" not in out


def test_ab_table_fits(runs: tuple[Path, Path, str, str]) -> None:
    from harness.analysis.ab import ab_compare

    db, _, first, _ = runs
    report = ab_compare(Store(db), first, first, base_label=MODELS["skilled:0.85"], tuned_label=MODELS["skilled:0.9"])
    for width in WIDTHS:
        text = _render(width, lambda out: print_ab(report, out))
        _fits(text, width)
        assert "verdict:" in text


def test_aggregate_tables_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    interval = Interval(0.6123, 0.5512, 0.6712, 1200, "wilson")
    groups = [GroupSummary(f"mmlu_{kind}", "20261202-183409-abcd", "instruction_first_with_explanation", 5, "balanced", model, "acc", True,
                           tuple(f"mmlu_{kind}_{i}" for i in range(12)), {}, interval, interval)
              for kind in ("stem", "humanities") for model in MODELS.values()]
    monkeypatch.setattr(aggregates_report, "group_summaries", lambda store, summaries: groups)
    report = {"entailment_with_a_long_label_name": {"precision": 0.8123, "recall": 0.7, "f1": 0.75, "support": 120.0},
              "neutral": {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 80.0}}

    class Cell:
        cell_id, task, prompt, shots, model = "c1", TASK, "polite_question_answer_format_v2", 3, MODELS["skilled:0.9"]

    class Summary:
        cell = Cell()

    monkeypatch.setattr(aggregates_report, "class_reports", lambda store, cells: {"c1": report})
    for width in WIDTHS:
        text = _render(width, lambda out: aggregates_report.print_aggregates(None, [Summary()], out))  # type: ignore[arg-type]
        _fits(text, width)
        words = _words(text)
        assert {"61.2", "81.2", "75.0", "120"} <= words and MODELS["skilled:0.9"] in text
    assert "[55.1, 67.1]" in _render(120, lambda out: aggregates_report.print_aggregates(None, [Summary()], out))  # type: ignore[arg-type]


def test_fitted_table_keeps_numbers_whole_and_drops_optional_columns_first() -> None:
    columns = [Col("name", wrap=True), Col("score [95% CI]", "right"), Col("detail", wrap=True, drop=1), Col("sd", "right", drop=2)]
    rows = [["a-very-long-unbroken-identifier-" * 3, "61.2 [55.1, 67.1]", "free text " * 20, "0.123"]]
    table, hidden = fitted_table(columns, rows, 40)
    assert hidden == ["detail", "sd"]
    text = _render(40, lambda out: out.print(table))
    _fits(text, 40)
    name_width = table.columns[0].width or 0
    folded = "".join(line[:name_width].strip() for line in text.splitlines()[2:])
    assert "61.2 [55.1, 67.1]" in text and folded == rows[0][0].strip()  # the long word folded onto more lines, not cut
    table, hidden = fitted_table(columns, rows, 200)
    assert hidden == []
    text = _render(80, lambda out: print_table(out, "a title " * 20, columns[:2], [["x", "1.0"]]))
    _fits(text, 80)


def test_key_text_columns_keep_their_words_whole_and_a_sliver_column_is_left_out() -> None:
    """A key column (a task name) is not folded mid-word while a description takes the room, and an
    optional free-text column too narrow to read is left out (it was 'arc_challeng|e' and a 12-wide description)."""
    columns = [Col("name", wrap=True), Col("type", wrap=True, drop=2), Col("rows", "right"), Col("prompt variants", wrap=True),
               Col("description", wrap=True, drop=1)]
    rows = [["arc_challenge", "multiple_choice", "1172", "lettered, lm_eval", "AI2 Reasoning Challenge (Challenge), grade-school science " * 2],
            ["ag_news", "classification", "2000", "article, topic_question", "AG News 4-way news topic classification " * 2]]
    for width in (80, 120, 160):
        table, hidden = fitted_table(columns, rows, width)
        text = _render(width, lambda out, t=table: out.print(t))
        _fits(text, width)
        shown = [c.header for c in table.columns]
        for word in ("arc_challenge", "multiple_choice", "classification", "topic_question"):
            column = next(i for i, c in enumerate(columns) if any(word in r[i] for r in rows))
            if columns[column].header in shown:
                assert word in text, (width, word)
        description = next((c for c in table.columns if c.header == "description"), None)
        assert description is None or (description.width or 0) >= 20, width
        assert "name" in shown and "prompt variants" in shown and "rows" in shown
    assert fitted_table(columns, rows, 160)[1] == []
