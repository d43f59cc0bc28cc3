import time
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.prompts.formats import read_instructions
from harness.prompts.lm_eval_import import read_config
from harness.prompts.messages import Message
from harness.prompts.promptsource import read_templates
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


@pytest.mark.parametrize("source", ["", "  \n\t\n"])
def test_empty_template_is_refused_when_loaded(tmp_path: Path, source: str) -> None:
    task = _task(tmp_path, {"plain": source})
    with pytest.raises(HarnessError, match=r"plain.jinja: the template is empty; it must render the prompt"):
        load_prompt(task, "plain")


@pytest.mark.parametrize(("name", "source"), [("plain", "{% if input == 'nothing' %}{{ input }}{% endif %}\n"),
                                               ("chatty.chat", "@@ user\n{% if input == 'nothing' %}{{ input }}{% endif %}\n")])
def test_a_row_that_renders_an_empty_prompt_is_an_error_naming_the_row(tmp_path: Path, name: str, source: str) -> None:
    task = _task(tmp_path, {name: source})
    with pytest.raises(HarnessError) as info:
        load_prompt(task, name.removesuffix(".chat")).render(task, task.items("test")[0], [])
    assert f"{name}.jinja: item 't0': the template rendered an empty prompt" in str(info.value)


def test_non_utf8_template_names_the_byte_offset_and_line(tmp_path: Path) -> None:
    task = _task(tmp_path, {"plain": "{{ input }}"})
    (task.folder / "prompts" / "plain.jinja").write_bytes(b"Q: {{ input }}\n\xff\xfeA:")
    with pytest.raises(HarnessError) as info:
        load_prompt(task, "plain")
    assert "plain.jinja: the template is not UTF-8 text: byte 0xff at offset 15 (line 2)" in str(info.value)


@pytest.mark.parametrize(("source", "says"), [
    ("Q: {{ input }}\n{% for i in range(10**9) %}x{% endfor %}", "template error (line 2): range(1000000000) has more than 100,000 steps"),
    ("Q: {{ input }}\n\n{{ 'x' * 10**10 }}", "template error (line 3): a str of length 1 repeated 10,000,000,000 times would be"),
    ("{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}", "template error (line 1): calls nested more than 100 deep"),
])
def test_a_template_over_a_limit_names_file_line_and_item(tmp_path: Path, source: str, says: str) -> None:
    task = _task(tmp_path, {"plain": source})
    start = time.perf_counter()
    with pytest.raises(HarnessError) as info:
        load_prompt(task, "plain").render(task, task.items("test")[1], [])
    assert time.perf_counter() - start < 5
    assert f"plain.jinja: item 't1': {says}" in str(info.value)


def test_an_answer_macro_over_a_limit_names_the_item_or_the_demonstration(tmp_path: Path) -> None:
    source = "{% macro answer(choice, index) %} {{ choice * 10**10 }}{% endmacro %}{% for s in shots %}{{ s.answer }}{% endfor %}{{ input }}"
    task = _task(tmp_path, {"plain": source})
    template = load_prompt(task, "plain")
    with pytest.raises(HarnessError) as info:
        template.render(task, task.items("test")[2], [])
    assert "plain.jinja: item 't2': macro 'answer': template error (line 1): a str of length 5 repeated" in str(info.value)
    with pytest.raises(HarnessError) as info:
        template.render(task, task.items("test")[2], task.items("fewshot")[:1])
    assert "plain.jinja: demonstration 'f0': macro 'answer': template error (line 1): a str of length 5 repeated" in str(info.value)


def test_the_foreign_loaders_refuse_non_utf8_files_by_byte_and_line(tmp_path: Path) -> None:
    bad = b"dataset: x\ntemplates: {}\n# caf\xe9\n"
    for name, load, what in [("templates.yaml", lambda p: read_templates(p, "x"), "PromptSource templates file"),
                             ("task.yaml", read_config, "lm-eval task file"), ("instructions.txt", read_instructions, "instructions file")]:
        path = tmp_path / name
        path.write_bytes(bad)
        with pytest.raises(HarnessError) as info:
            load(path)
        assert str(info.value) == f"{path}: the {what} is not UTF-8 text: byte 0xe9 at offset 30 (line 3); save it as UTF-8"


def test_a_group_members_find_the_variants_harness_formats_wrote_for_the_group(tmp_path: Path) -> None:
    """`harness formats GROUP -o DIR` writes DIR/<group>/; `harness run --task GROUP --prompts-dir DIR` runs every member,
    whose own name is <group>_<subject>: each member must find the group's variants (and a member's own folder first)."""
    import json

    from tests.helpers import cli

    folder = write_task(tmp_path, rows=6, spec={"subtasks": {"by": "{{ subject }}"}})
    for split in ("test", "fewshot"):
        path = folder / f"{split}.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "subject": f"s{i % 2}"}) + "\n" for i, r in enumerate(rows)))
    out = tmp_path / "formats"
    assert cli("formats", folder, "--prompt", "plain", "-k", "2", "-o", out) == 0
    assert sorted(p.name for p in (out / "toy").iterdir()) == ["plain__fmt0.jinja", "plain__fmt1.jinja"]
    (out / "toy_s1").mkdir()
    (out / "toy_s1" / "plain__fmt1.jinja").write_text((out / "toy" / "plain__fmt0.jinja").read_text())  # a member's own override
    members = load_task(folder).members()
    assert [m.name for m in members] == ["toy_s0", "toy_s1"]
    found = [available_prompts(m, [out]) for m in members]
    assert found[0]["plain__fmt0"] == out / "toy" / "plain__fmt0.jinja" and found[0]["plain__fmt1"] == out / "toy" / "plain__fmt1.jinja"
    assert found[1]["plain__fmt1"] == out / "toy_s1" / "plain__fmt1.jinja"
    assert load_prompt(members[0], "plain__fmt1", [out]).name == "plain__fmt1"
