"""The task kinds table (harness.tasks.kinds): its rows, the checks and metrics read off it, the one
target -> references helper, and a scan that no module outside the table branches on a kind's name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

import harness.scoring.evaluate_adapter as evaluate_adapter
from harness.core.errors import HarnessError
from harness.scoring import Outcome, get_metric
from harness.tasks.kinds import KINDS, TaskType, kind_names, task_kind
from harness.tasks.task import Item, TaskSpec, load_task, target_references
from tests.helpers import write_task

HARNESS = Path(__file__).resolve().parents[2] / "harness"
TABLE = HARNESS / "tasks" / "kinds.py"
# comparisons with a kind's name that are about something else: the API backend's ``mc_fallback: generate``
# (generate text and parse a choice out of it) is a fallback mode, not a task type
NOT_A_TASK_TYPE = {("backends/openai/backend.py", "options.mc_fallback"), ("backends/openai/backend.py", "self.options.mc_fallback")}


def _is_kind(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KINDS


def _holds_kind(node: ast.AST) -> bool:
    return _is_kind(node) or (isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_is_kind(e) for e in node.elts))


def kind_branches(source: str, where: str = "<snippet>") -> list[str]:
    """Each place in ``source`` that compares with a kind's name, matches on one, or lists kind names as data."""
    found: list[tuple[int, str]] = []
    compared: set[int] = set()  # kind lists compared with: reported once, as the comparison
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            compared.update(id(o) for o in operands)
            if any(_holds_kind(o) for o in operands):
                others = {ast.unparse(o) for o in operands if not _holds_kind(o)}
                if not all((where, other) in NOT_A_TASK_TYPE for other in others):
                    found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.MatchValue) and _is_kind(node.value):
            found.append((node.lineno, f"case {ast.unparse(node.value)}"))
        elif (isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(_is_kind(e) for e in node.elts)
              and id(node) not in compared):
            found.append((node.lineno, f"{ast.unparse(node)} (a list of kinds: use kind_names)"))
    return [f"{where}:{line}: {text}" for line, text in sorted(found)]


def test_no_module_outside_the_table_branches_on_a_task_type() -> None:
    found = []
    for path in sorted(HARNESS.rglob("*.py")):
        if path != TABLE:
            found += kind_branches(path.read_text(encoding="utf-8"), path.relative_to(HARNESS).as_posix())
    assert not found, "branch on the kinds table's attributes (harness.tasks.kinds), not on a type's name:\n" + "\n".join(found)


def test_the_scan_catches_branches_on_a_type() -> None:
    snippet = '''
if spec.type == "generate": pass
if cell.task_type in ("multiple_choice", "classification"): pass
TYPES = ("classification",)
match kind:
    case "multiple_choice": pass
if options.mc_fallback == "generate": pass
payload["type"] = "generate"
'''
    found = kind_branches(snippet)
    assert [line.split(":")[1] for line in found] == ["2", "3", "4", "6", "7"]
    assert kind_branches('if options.mc_fallback == "generate": pass', "backends/openai/backend.py") == []


# -- the table ------------------------------------------------------------------------------
def test_the_table_and_the_type_literal_name_the_same_kinds_in_order() -> None:
    assert tuple(KINDS) == get_args(TaskType) == ("multiple_choice", "generate", "classification")
    assert all(name == kind.name and kind.description for name, kind in KINDS.items())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("multiple_choice", dict(choices="expression", scoring="loglikelihood", several_correct=True, per_choice_contexts=True,
                                 calibratable=True, has_choices=True, has_labels=False, repeats=False, gold="choices", answer="choice")),
        ("generate", dict(choices="none", scoring="generation", several_correct=False, per_choice_contexts=False, calibratable=False,
                          has_choices=False, has_labels=False, repeats=True, gold="references", answer="extracted answer")),
        ("classification", dict(choices="verbalizers", scoring="loglikelihood", several_correct=False, per_choice_contexts=False,
                                calibratable=True, has_choices=True, has_labels=True, repeats=False, gold="label", answer="label")),
    ],
)
def test_each_kind_says_what_its_tasks_are(name: str, expected: dict[str, Any]) -> None:
    kind = task_kind(name)
    assert {attribute: getattr(kind, attribute) for attribute in expected} == expected


def test_an_unknown_type_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(HarnessError, match="unknown task type 'ranking'; known: multiple_choice, generate, classification"):
        task_kind("ranking")


def test_kind_names_keep_table_order() -> None:
    assert kind_names(lambda k: k.scoring == "loglikelihood") == ("multiple_choice", "classification")
    assert kind_names(lambda k: False) == ()


def test_metrics_apply_to_the_kinds_they_did() -> None:
    """The task_types read off the table are the tuples the metrics used to spell out (same order: error messages)."""
    choice, generated = ("multiple_choice", "classification"), ("generate",)
    expected = {"acc": choice, "acc_norm": choice, "acc_norm_tokens": choice, "acc_norm_bytes": choice, "acc_mutual_info": choice,
                "acc_calibrated": choice, "mc1": ("multiple_choice",), "mc2": ("multiple_choice",), "exact_match": generated,
                "squad_em": generated, "squad_f1_zh": generated, "maj@4": generated, "pass@2": generated, "bleu": generated,
                "f1_macro": ("classification",), "mcc": ("classification",)}
    assert {name: get_metric(name).task_types for name in expected} == expected


def test_tasks_and_specs_know_their_kind(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    assert task.kind is task.spec.kind is KINDS["multiple_choice"]


# -- spec validation reads the table; the messages are the ones they were ---------------------
BASE: dict[str, Any] = {"name": "t", "data": {"test": "t.jsonl"}, "input": "{{ q }}", "target": "{{ a }}", "prompts": ["p"],
                        "metrics": ["acc"]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "multiple_choice"}, "a multiple_choice task needs 'choices' (an expression giving the list of choices)"),
        ({"type": "generate", "contexts": "{{ c }}", "continuation": "{{ x }}"},
         "'contexts' and 'continuation' (per-choice contexts) are for type: multiple_choice, not generate"),
        ({"type": "classification"}, "a classification task needs 'verbalizers' (label -> word or list of words)"),
        ({"type": "classification", "verbalizers": {"a": "A"}, "choices": "{{ o }}"},
         "a classification task takes its choices from 'verbalizers'; remove 'choices'"),
        ({"type": "generate", "verbalizers": {"a": "A"}}, "'verbalizers' is for type: classification, not generate"),
        ({"type": "classification", "verbalizers": {"a": "A", "b": "B"}, "target_format": "labels"},
         "'target_format: labels' is for multiple_choice tasks (several correct choices), not classification"),
        ({"type": "multiple_choice", "choices": "{{ o }}", "repeats": 2},
         "'repeats' > 1 is for generate tasks (log-likelihood scores do not vary between samples)"),
    ],
)
def test_spec_messages_name_the_kinds_that_take_a_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({**BASE, **fields})
    assert message in str(info.value)


# -- target -> references: one helper ---------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "labels", "references"),
    [
        (["Paris", "paris"], None, ("Paris", "paris")),  # a generate item's references
        ([], None, ()),
        (1, ("negative", "positive"), ("positive",)),  # a classification gold label: its name
        (5, ("negative", "positive"), ("5",)),  # out of range: the digits, as corpus_items always did
        (2, None, ("2",)),  # a choice index without labels
        ([0, 2], None, ("0", "2")),  # several correct choices
        ("x", None, ("x",)),
    ],
)
def test_target_references(target: Any, labels: tuple[str, ...] | None, references: tuple[str, ...]) -> None:
    assert target_references(target, labels) == references


def test_item_references_are_what_the_corpus_path_reads_from_the_stored_row() -> None:
    generated = Item(id="g", row={}, input="", target=("Rome", "Roma"))
    label = Item(id="c", row={}, input="", target=1, choices=("negative", "positive"), verbalizers=(("bad",), ("good", "great")))
    several = Item(id="m", row={}, input="", target=0, choices=("a", "b", "c"), correct=(0, 2))
    assert generated.references == ("Rome", "Roma") == target_references(generated.stored_target())
    assert label.references == ("positive",) == target_references(label.stored_target(), ("negative", "positive"))
    assert several.references == ("0", "2") == target_references(several.stored_target())


class _FakeEvaluateModule:
    """Stands in for an ``evaluate`` module: exact match of prediction and (single) reference."""

    features = {"predictions": "Value", "references": "Value"}

    def compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return {"match": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}


def test_an_evaluate_metric_scores_a_classification_item_on_its_gold_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per item as over the corpus: the reference is the gold label's name (it was the label's index)."""
    monkeypatch.setattr(evaluate_adapter, "load_module", lambda source: _FakeEvaluateModule())
    metric = get_metric("evaluate:kinds_test_fake_match#match")
    assert metric.task_types == ("generate", "classification")
    item = Item(id="c", row={}, input="", target=1, choices=("negative", "positive"), verbalizers=(("bad",), ("good",)))
    assert metric.score(Outcome(item=item, extracted="positive")) == 1.0
    assert metric.score(Outcome(item=item, extracted="negative")) == 0.0
    generated = Item(id="g", row={}, input="", target=("Rome",))
    assert metric.score(Outcome(item=generated, extracted="Rome")) == 1.0
