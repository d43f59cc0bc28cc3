"""Format perturbations: seeded, distinct, formatting-only, and real templates that render."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.prompts.formats import (
    _TAG,
    FormatChoice,
    apply_format,
    perturb,
    write_variants,
)
from harness.prompts.template import load_prompt
from harness.tasks.task import load_task
from tests.helpers import cli, write_task

SOURCE = """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}Review: {{ s.input }}
Sentiment:{{ s.answer }}

{% endfor %}Review: {{ input }}
Sentiment:"""


def test_apply_format_changes_only_literal_formatting() -> None:
    text = apply_format(SOURCE, FormatChoice("upper", " -", "\n"))
    assert text == """{% macro answer(choice, index) %} {{ choice }}{% endmacro %}
{% for s in shots %}REVIEW - {{ s.input }}
SENTIMENT -{{ s.answer }}
{% endfor %}REVIEW - {{ input }}
SENTIMENT -"""
    assert _TAG.findall(text) == _TAG.findall(SOURCE)  # every Jinja tag untouched


def test_perturb_is_seeded_distinct_and_starts_with_the_original() -> None:
    first = perturb(SOURCE, 8, seed=3)
    assert first == perturb(SOURCE, 8, seed=3)
    assert first != perturb(SOURCE, 8, seed=4)
    assert first[0] == (FormatChoice(), SOURCE)
    assert len({text for _, text in first}) == 8
    with pytest.raises(HarnessError, match="distinct formattings"):
        perturb(SOURCE, 100)
    with pytest.raises(HarnessError, match="literal field names"):
        perturb("{{ input }} ->", 2)


def test_variants_are_loadable_templates_that_render(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path, templates={"plain": SOURCE}))
    written = write_variants(task.name, "plain", SOURCE, tmp_path / "fmts", 5, seed=0)
    item, shots = task.items("test")[0], task.items("fewshot")[:2]
    prompts = set()
    for name, _ in written:
        rendered = load_prompt(task, name, [tmp_path / "fmts"]).render(task, item, shots)
        assert "t question 0?" in rendered.prompt and "f question 1?" in rendered.prompt
        prompts.add(rendered.prompt)
    assert len(prompts) == 5
    assert cli("formats", str(task.folder), "--prompt", "plain", "-k", "3", "-o", str(tmp_path / "cli")) == 0
    assert sorted(p.name for p in (tmp_path / "cli" / "toy").iterdir()) == [f"plain__fmt{i}.jinja" for i in range(3)]
