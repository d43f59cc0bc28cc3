"""Choice-label styles and instruction paraphrases in format perturbations: listed labels,
demonstration answers and scored continuations always agree; variants are seeded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.core.choice_labels import (
    choice_key,
    choice_label,
    relabel,
    written_style,
)
from harness.core.errors import HarnessError
from harness.prompts.formats import (
    _TAG,
    instruction_span,
    perturb,
    read_instructions,
    with_instruction,
    write_variants,
)
from harness.prompts.template import load_prompt
from harness.tasks.task import load_task
from tests.helpers import cli, write_task

LETTERED = """{% macro answer(choice, index) %} {{ letters[index] }}{% endmacro %}
Answer each question.

{% for s in shots %}
Question: {{ s.input }}
{% for c in s.choices %}
{{ letters[loop.index0] }}. {{ c }}
{% endfor %}
Answer:{{ s.answer }}

{% endfor %}
Question: {{ input }}
{% for c in choices %}
{{ letters[loop.index0] }}. {{ c }}
{% endfor %}
Answer:"""

CONTENT = re.compile(r"[tf] question \d+\?|yes \d+|no \d+|maybe")


def test_styles_give_labels_and_keys() -> None:
    assert [choice_label(i, "(a)") for i in range(3)] == ["(a)", "(b)", "(c)"]
    assert [choice_key(i, "1)") for i in range(3)] == ["1", "2", "3"]
    assert choice_label(1) == "B." and choice_key(25, "A)") == "Z"
    for bad in ("x.", "Aa", "11"):
        with pytest.raises(HarnessError, match="exactly one marker"):
            choice_label(0, bad)


def test_relabel_rewrites_listing_and_answer_with_one_style() -> None:
    out = relabel(LETTERED, "(a)")
    assert out.count('choice_label(loop.index0, "(a)")') == 2 and 'choice_key(index, "(a)")' in out
    assert "{{ c }}" in out and ". {{ c }}" not in out  # the decoration is now the style's
    assert written_style(LETTERED) == "A." and written_style(out) == "(a)"
    assert written_style("({{ letters[i] }}) {{ c }}") == "(A)"
    assert relabel("({{ letters[i] }}) {{ c }}", "1.") == '{{ choice_label(i, "1.") }} {{ c }}'
    assert relabel(out, "A)") == relabel(LETTERED, "A)")  # re-styling a styled template is the same


def test_label_variants_differ_only_in_format_and_answers_follow_the_labels(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path, templates={"plain": LETTERED}))
    variants = perturb(LETTERED, 8, seed=5)
    assert variants == perturb(LETTERED, 8, seed=5) and variants != perturb(LETTERED, 8, seed=6)
    assert variants[0][1] == LETTERED and variants[0][0].labels == "A."
    assert len({c.labels for c, _ in variants}) >= 3  # the label axis is really varied
    written = write_variants(task.name, "plain", LETTERED, tmp_path / "fmts", 8, seed=5)
    item, shots = task.items("test")[4], task.items("fewshot")[:3]
    contents = set()
    for (name, choice), (_, text) in zip(written, variants):
        style = choice.labels or "A."
        assert _TAG.findall(relabel(text, style)) == _TAG.findall(relabel(LETTERED, style))  # no other Jinja tag changes
        rendered = load_prompt(task, name, [tmp_path / "fmts"]).render(task, item, shots)
        assert rendered.continuations == tuple(f" {choice_key(i, style)}" for i in range(3))
        prompt = rendered.prompt
        assert isinstance(prompt, str)
        for i, c in enumerate(item.choices or ()):
            assert f"{choice_label(i, style)} {c}" in prompt
        for shot in shots:  # each demonstration shows its own target's key in the same style
            block = prompt.split(str(shot.input), 1)[1]
            answer_line = [line for line in block.splitlines() if line.lower().startswith("answer")][0]
            assert answer_line.endswith(f" {choice_key(int(shot.target), style)}")  # type: ignore[arg-type]
        contents.add(tuple(CONTENT.findall(prompt)))
    assert len(contents) == 1  # every variant says the same things, in the same order


def test_templates_without_labels_keep_their_old_variants() -> None:
    source = "{% for s in shots %}Review: {{ s.input }}\nSentiment:{{ s.answer }}\n\n{% endfor %}Review: {{ input }}\nSentiment:"
    assert all(choice.labels is None for choice, _ in perturb(source, 6, seed=2))


def test_instruction_is_the_marked_block_or_the_first_literal_line() -> None:
    span = instruction_span(LETTERED)
    assert span is not None and LETTERED[span[0]:span[1]] == "Answer each question."
    marked = "{% macro answer(c, i) %} {{ c }}{% endmacro %}{# instruction #}Two\nlines.{# /instruction #}\n{% for s in shots %}{% endfor %}Q:"
    assert with_instruction(marked, "One\nmore.").count("One\nmore.") == 1
    assert instruction_span("{# c #}\n{% for s in shots %}Q: {{ s.input }}{% endfor %}\nQ:") is None
    with pytest.raises(HarnessError, match="several lines"):
        with_instruction(LETTERED, "two\nlines")


def test_paraphrases_combine_with_formats(tmp_path: Path) -> None:
    alternatives = ["Pick the right option.", "Choose one answer per question."]
    variants = perturb(LETTERED, 6, seed=1, instructions=alternatives)
    assert [c.instruction for c, _ in variants] == [0, 1, 2, 0, 1, 2]
    for choice, text in variants:
        wanted = ["Answer each question.", *alternatives][choice.instruction]
        assert wanted in text and all(other not in text for other in ["Answer each question.", *alternatives] if other != wanted)
    assert variants == perturb(LETTERED, 6, seed=1, instructions=alternatives)


@pytest.mark.parametrize("name,body", [("alt.txt", "Pick the right option.\n\nChoose one answer.\n"),
                                       ("alt.json", json.dumps(["Pick the right option.", "Choose one answer."])),
                                       ("alt.yaml", "- Pick the right option.\n- Choose one answer.\n")])
def test_instructions_file_formats(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / name).write_text(body)
    assert read_instructions(tmp_path / name) == ["Pick the right option.", "Choose one answer."]


def test_formats_cli_instructions_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_task(tmp_path / "tasks", templates={"plain": LETTERED, "bare": LETTERED.replace("Answer each question.\n", "")})
    (tmp_path / "alt.txt").write_text("Pick the right option.\n")
    assert cli("formats", folder, "--prompt", "plain", "-k", "4", "-o", tmp_path / "out", "--instructions", tmp_path / "alt.txt") == 0
    assert "labels=" in capsys.readouterr().out
    assert "Pick the right option." in (tmp_path / "out" / "toy" / "plain__fmt1.jinja").read_text()
    assert cli("formats", folder, "--prompt", "bare", "-k", "4", "-o", tmp_path / "out", "--instructions", tmp_path / "alt.txt") == 2
    assert "has no instruction to paraphrase" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"a": 1}')
    assert cli("formats", folder, "--prompt", "plain", "-o", tmp_path / "out", "--instructions", tmp_path / "bad.json") == 2
    assert "bad.json: expected a list" in capsys.readouterr().err
    (tmp_path / "broken.txt").write_text("Fine.\nBroken {{ here\n")
    assert cli("formats", folder, "--prompt", "plain", "-o", tmp_path / "out", "--instructions", tmp_path / "broken.txt") == 2
    assert "broken.txt: entry 2" in capsys.readouterr().err
