"""The shipped GSM8K task's answer extraction against lm-eval's own regex filters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.scoring import apply_filters, build_filter
from harness.tasks.sources import Origin
from harness.tasks.task import load_task
from tests.conftest import ROOT as PROJECT_ROOT

CASES = json.loads((Path(__file__).parents[1] / "cases" / "gsm8k_extraction.json").read_text(encoding="utf-8"))
TASK = load_task(PROJECT_ROOT / "tasks" / "gsm8k")
FILTERS = [build_filter(step) for step in TASK.spec.filters]


def lm_eval_regex_filter(text: str, pattern: str, group_select: int = 0, fallback: str = "[invalid]") -> str:
    """lm_eval.filters.extraction.RegexFilter.apply for one response (lm-eval 0.4)."""
    match = re.compile(pattern).findall(text)
    if match:
        match = match[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m]
            match = match[0] if match else fallback
        return match.strip()
    return fallback


@pytest.mark.parametrize("case", CASES["cases"])
def test_extraction(case: dict) -> None:
    assert apply_filters(FILTERS, case["output"]) == case["expected"]
    strict = lm_eval_regex_filter(case["output"], r"#### (\-?[0-9\.\,]+)")
    assert strict == (case["lm_eval_strict"] or "[invalid]")
    if case["lm_eval_strict"] is None and "answer is" not in case["output"]:
        # where lm-eval's strict match fails, our answer is its flexible-extract answer, normalised
        flexible = lm_eval_regex_filter(case["output"], r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
        normalised = build_filter("numeric")(flexible) if flexible != "[invalid]" else None
        assert normalised == case["expected"]


@pytest.mark.parametrize("case", CASES["targets"])
def test_target_is_the_final_number(case: dict) -> None:
    item = TASK._make_item({"question": "q", "answer": case["answer"]}, Origin("test.jsonl", "test", "line"), 1)
    assert item.target == (case["expected"],)
