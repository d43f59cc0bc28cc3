"""Docs that match the code (issue 15): the claims of README.md that are cheap to pin.

Reproducers: the README listed no template globals (``letters`` was undocumented), said
nothing of the whitespace rules or of the default item id, sent ``items.jsonl`` to
``results/`` even with ``--db`` elsewhere, and did not mention ``--tasks-dir``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness.cli.app import build_parser
from harness.core.templating import compile_template, environment
from harness.store.store import Store
from harness.tasks.task import load_task
from tests.helpers import cli, write_task

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after the line that contains ``heading``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]  # without the header


def test_documented_template_globals_are_exactly_the_environments() -> None:
    rows = _table_after(README, "**Template globals**")
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)", row[0])}
    assert documented == set(environment().globals)
    env = environment()
    assert env.globals["letters"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_whitespace_rules() -> None:
    env = environment()
    assert env.trim_blocks and env.lstrip_blocks and not env.keep_trailing_newline
    source = "Q: {{ q }}\n  {% if shots %}\nnever\n  {% endif %}\n{# a comment #}\nA:\n"
    assert compile_template(source, "t").render(q="x", shots=[]) == "Q: x\nA:"  # no blank lines, no trailing newline
    for claim in ("trim_blocks", "lstrip_blocks", "keep_trailing_newline"):
        assert claim in README


def test_default_item_id_is_the_rows_id_else_file_stem_and_line(tmp_path: Path) -> None:
    folder = write_task(tmp_path)
    (folder / "test.jsonl").write_text('{"question": "a?", "options": ["x", "y"], "answer": 0}\n\n'
                                       '{"id": 7, "question": "b?", "options": ["x", "y"], "answer": 1}\n'
                                       '{"question": "c?", "options": ["x", "y"], "answer": 1}\n')
    assert [i.id for i in load_task(folder).items("test")] == ["test:1", "7", "test:4"]  # lines count from 1, blank ones too
    assert "`<file stem>:<line>`" in README


def test_choices_may_be_a_list_literal(tmp_path: Path) -> None:
    folder = write_task(tmp_path, spec={"choices": "{{ ['yes', 'no'] }}", "target": "{{ answer % 2 }}"})
    items = load_task(folder).items("test")
    assert {i.choices for i in items} == {("yes", "no")}
    assert "['no', 'yes']" in README  # the README's example of one


def test_items_jsonl_goes_next_to_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path / "tasks")
    db = tmp_path / "elsewhere" / "my.db"
    assert cli("run", "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--model", "scripted:m", "--db", db, "--quiet", "--json") == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert (tmp_path / "elsewhere" / run_id / "items.jsonl").is_file()
    assert (tmp_path / "elsewhere" / run_id / "config.json").is_file()
    assert not (tmp_path / "results").exists()
    assert Store(db).run_config(run_id)
    assert "next to the database" in README


@pytest.mark.parametrize("verb", ["run", "validate"])
def test_every_option_is_in_the_readme(verb: str) -> None:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    options = {o for a in subparsers.choices[verb]._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", README))
    assert not missing, f"harness {verb} options not in README.md: {missing}"


def test_readme_experiment_example_is_a_valid_spec() -> None:
    from harness.runner.spec import ExperimentSpec

    block = README.split("An experiment file holds the same fields as the flags:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    spec = ExperimentSpec.model_validate(yaml.safe_load(block))
    assert spec.sample is not None or spec.limit is not None
