from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.prompts.messages import Message
from harness.prompts.template import available_prompts, load_prompt
from harness.tasks.task import find_task, load_task
from tests.helpers import write_task


def _task(tmp_path: Path, templates: dict[str, str]):
    return load_task(write_task(tmp_path, templates=templates))


def test_text_render_with_shots_and_answer_macro(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "{% macro answer(choice, index) %} ({{ letters[index] }}){% endmacro %}"
                                     "{% for s in shots %}{{ s.input }} ->{{ s.answer }}\n{% endfor %}{{ input }} ->"})
    items = task.items("test")
    rendered = load_prompt(task, "plain").render(task, items[0], task.items("fewshot")[:2])
    assert rendered.prompt == "f question 0? -> (A)\nf question 1? -> (B)\nt question 0? ->"
    assert rendered.continuations == (" (A)", " (B)", " (C)")


def test_default_continuation_is_space_choice(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "{{ input }}"})
    rendered = load_prompt(task, "plain").render(task, task.items("test")[0], [])
    assert rendered.continuations == (" yes 0", " no 0", " maybe")


def test_chat_template_renders_messages(tmp_path: Path) -> None:
    source = "@@ system\nBe brief.\n{% for s in shots %}\n@@ user\n{{ s.input }}\n@@ assistant\n{{ s.answer }}\n{% endfor %}\n@@ user\n{{ input }}\n"
    task = _task(tmp_path, {"plain": "{{ input }}", "chatty.chat": source})
    assert set(available_prompts(task)) == {"plain", "chatty"}
    template = load_prompt(task, "chatty")
    assert template.chat
    rendered = template.render(task, task.items("test")[0], task.items("fewshot")[:1])
    assert rendered.prompt == (
        Message("system", "Be brief."), Message("user", "f question 0?"), Message("assistant", " yes 0"), Message("user", "t question 0?"),
    )


def test_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "Line one\n{{ questoin }}"})
    with pytest.raises(HarnessError) as info:
        load_prompt(task, "plain").render(task, task.items("test")[0], [])
    message = str(info.value)
    assert "plain.jinja" in message and "questoin" in message and "line 2" in message


@pytest.mark.parametrize("source", ["{{ ''.__class__.__mro__ }}", "{{ input.__class__.__mro__[1].__subclasses__() }}",
                                    "{{ cycler.__init__.__globals__ }}"])
def test_sandbox_blocks_python_internals(tmp_path: Path, source: str) -> None:
    task = _task(tmp_path, {"plain": source})
    with pytest.raises(HarnessError) as info:
        load_prompt(task, "plain").render(task, task.items("test")[0], [])
    message = str(info.value)
    assert "plain.jinja" in message and "unsafe" in message


def test_syntax_error(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "{% for x in %}"})
    with pytest.raises(HarnessError, match="plain.jinja: syntax error"):
        load_prompt(task, "plain").render(task, task.items("test")[0], [])


def test_unknown_variant_did_you_mean(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "{{ input }}"})
    with pytest.raises(HarnessError, match="Did you mean 'plain'"):
        load_prompt(task, "plian")


def test_bundled_variants_render_differently() -> None:
    task = find_task("capitals")
    item, shots = task.items("test")[0], task.items("fewshot")[:3]
    renders = {name: load_prompt(task, name).render(task, item, shots) for name in task.spec.prompts}
    assert len({r.prompt for r in renders.values()}) == len(renders) >= 3
    for rendered in renders.values():
        assert len(rendered.continuations) == 4
