"""PromptSource templates imported as harness variants render exactly what PromptSource's own
``Template.apply`` renders for the same rows (the real PromptSource code from its archive is the
oracle here, never used by harness), score PromptSource's answer choices, agree with the task's
gold, and go through a run and the sensitivity report like any variant."""

from __future__ import annotations

import importlib
import json
import sys
import tarfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.core.paths import bundled_dir, cache_dir
from harness.prompts.promptsource import PSTemplate, archive_path, convert, input_source, read_templates
from harness.prompts.template import load_prompt
from harness.tasks.task import Task, find_task, load_task

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def archive() -> Path:
    return archive_path(cache_dir() / "promptsource")  # fetched once from the package registry


@pytest.fixture(scope="module")
def promptsource(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """PromptSource's own templates module, from its archive (its pkg_resources call answered by a stand-in)."""
    root = tmp_path_factory.mktemp("ps")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    sys.path.insert(0, str(next(root.glob("promptsource-*"))))
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = lambda package, name: str(Path(importlib.import_module(package).__file__).parent / name)  # type: ignore[attr-defined]
    added = "pkg_resources" not in sys.modules
    sys.modules.setdefault("pkg_resources", stand_in)
    try:
        yield importlib.import_module("promptsource.templates")
    finally:
        sys.path.pop(0)
        for name in [n for n in sys.modules if n == "promptsource" or n.startswith("promptsource.")]:
            del sys.modules[name]
        if added:  # the stand-in must not outlive PromptSource: other code imports the real one
            del sys.modules["pkg_resources"]


def single_word_ag_news(tmp_path: Path) -> Task:
    """AG News with one verbalizer per label, as PromptSource's templates give one answer per label."""
    spec = yaml.safe_load((bundled_dir("tasks") / "ag_news" / "task.yaml").read_text(encoding="utf-8"))
    spec.update(name="ag_news_ps", verbalizers={"World": "World", "Sports": "Sports", "Business": "Business", "Sci/Tech": "Technology"},
                prompts=["article"])
    folder = tmp_path / "ag_news_ps"
    folder.mkdir()
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_task(folder, [DATA])


def piqa_style(tmp_path: Path) -> Task:
    """A PIQA-shaped task (goal, sol1, sol2, label; not in ../shared/data) on rows made from ARC-Easy's:
    PromptSource's piqa templates have answer choices that are Jinja over the row."""
    lines = (DATA / "arc_easy" / "test.jsonl").read_text(encoding="utf-8").split("\n")[:20]
    rows = [json.loads(line) for line in lines if line.strip()]
    folder = tmp_path / "piqa_style"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps({"goal": r["question"]["stem"], "sol1": r["question"]["choices"][0]["text"],
                                                          "sol2": r["question"]["choices"][1]["text"], "label": i % 2}) + "\n"
                                               for i, r in enumerate(rows)), encoding="utf-8")
    spec = {"name": "piqa_style", "type": "multiple_choice", "data": {"test": "test.jsonl", "fewshot": "test.jsonl"}, "input": "{{ goal }}",
            "choices": "{{ [sol1, sol2] }}", "target": "{{ label }}", "prompts": ["plain"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    (folder / "plain.jinja").write_text("{{ goal }}", encoding="utf-8")
    return load_task(folder)


# dataset, the harness task, what PromptSource's (hub-shaped) row is for a harness row, --field mappings
CASES: list[tuple[str, Callable[[Path], Task], Callable[[dict[str, Any]], dict[str, Any]], dict[str, str]]] = [
    ("glue/sst2", lambda _: find_task("sst2", data_dirs=[DATA]), lambda r: {**r, "idx": 0}, {}),
    ("super_glue/boolq", lambda _: find_task("boolq", data_dirs=[DATA]),
     lambda r: {"question": r["question"], "passage": r["passage"], "idx": 0, "label": int(r["answer"])}, {}),
    ("ag_news", single_word_ag_news, lambda r: {"text": r["Title"] + ". " + r["Description"], "label": r["label"]},
     {"text": "Title ~ '. ' ~ Description"}),
    ("piqa", piqa_style, lambda r: dict(r), {}),
]


@pytest.mark.parametrize(("dataset", "make_task", "hub_row", "fields"), CASES, ids=[c[0] for c in CASES])
def test_imported_variants_render_what_promptsource_renders(
    dataset: str, make_task: Callable[[Path], Task], hub_row: Callable[[dict[str, Any]], dict[str, Any]], fields: dict[str, str],
    archive: Path, promptsource: Any, tmp_path: Path,
) -> None:
    task = make_task(tmp_path)
    out = tmp_path / "prompts" / task.name
    args = ["import", "promptsource", dataset, "-o", str(out), "--from", str(archive), "--task", str(task.folder), "--data-dir", str(DATA)]
    for name, expression in fields.items():
        args += ["--field", f"{name}={expression}"]
    assert main(args) == 0
    written = sorted(out.glob("ps_*.jinja"))
    assert len(written) >= 5
    originals = {t.name: t for t in promptsource.DatasetTemplates(*dataset.split("/")).templates.values()}
    for path in written:
        template = load_prompt(task, str(path))
        name = json.loads(path.read_text(encoding="utf-8").split('"', 2)[1].join(['"', '"']))  # the original name, from the header
        original = originals[name]
        for item in task.items("test")[:12]:
            rendered = template.render(task, item, [])
            expected_prompt, expected_target = original.apply(hub_row(item.row))
            choices = original.get_answer_choices_list(hub_row(item.row))
            assert rendered.prompt == expected_prompt, (path.name, item.id)
            assert rendered.continuations == tuple(f" {c}" for c in choices), (path.name, item.id)
            assert expected_target == choices[item.target], (path.name, item.id)  # the task's gold is PromptSource's


def test_demonstrations_are_the_same_rendering_with_their_answers(archive: Path, tmp_path: Path) -> None:
    task = find_task("sst2", data_dirs=[DATA])
    out = tmp_path / "prompts" / "sst2"
    assert main(["import", "promptsource", "glue/sst2", "-o", str(out), "--from", str(archive)]) == 0
    template = load_prompt(task, str(out / "ps_review.jinja"))
    first, second, third = task.items("test")[:3]
    alone = [template.render(task, item, []).prompt for item in (first, second, third)]
    shown = template.render(task, third, [first, second]).prompt
    words = ["negative", "positive"]
    assert shown == f"{alone[0]} {words[first.target]}\n\n{alone[1]} {words[second.target]}\n\n{alone[2]}"


def test_imported_variants_run_and_enter_the_sensitivity_report(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prompts" / "sst2"
    assert main(["import", "promptsource", "glue/sst2", "-o", str(out), "--from", str(archive), "--json"]) == 0
    names = [Path(p).stem for p in json.loads(capsys.readouterr().out)["written"]]
    db = str(tmp_path / "h.db")
    assert main(["run", "--task", "sst2", "--data-dir", str(DATA), "--prompts-dir", str(tmp_path / "prompts"), "--prompt", *names,
                 "--model", "scripted:m", "--limit", "30", "--db", db, "--quiet", "--json"]) == 0
    capsys.readouterr()
    assert main(["sensitivity", "--db", db, "--json"]) == 0
    report = capsys.readouterr().out
    assert all(name in report for name in names)


def test_the_yaml_tags_are_read_safely_and_nothing_else_is(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text("dataset: x\ntemplates:\n  a: !Template\n    id: a\n    name: n\n    jinja: '{{x}} ||| {{y}}'\n    answer_choices: p ||| q\n"
                    "    metadata: !TemplateMetadata\n      original_task: true\n", encoding="utf-8")
    assert read_templates(path, "x")[0] == PSTemplate("a", "n", "{{x}} ||| {{y}}", "p ||| q", {"original_task": True})
    path.write_text("templates: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="not valid YAML"):
        read_templates(path, "x")


def test_what_cannot_be_imported_says_why(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HarnessError, match="no answer_choices: a generation template"):
        convert(PSTemplate("i", "gen", "{{a}} ||| {{b}}", None), "x")
    with pytest.raises(HarnessError, match="picks at random"):
        convert(PSTemplate("i", "rnd", "{{ ['a','b'] | choice }} ||| {{b}}", "p ||| q"), "x")
    assert input_source("{% if a %}x ||| y{% endif %}") == "{% if a %}x ||| y{% endif %}"  # a separator inside a block: all of it
    assert input_source("{% if a %}x{% endif %} ||| {{ y }}") == "{% if a %}x{% endif %} "
    assert main(["import", "promptsource", "glue/sst", "-o", str(tmp_path / "p"), "--from", str(archive)]) == 2
    err = capsys.readouterr().err
    assert "no templates for 'glue/sst'" in err and "glue/sst2" in err and "Traceback" not in err
