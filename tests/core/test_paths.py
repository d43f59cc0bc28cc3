"""Where the bundled tasks, prompts and metric cases are found (harness.core.paths), and the
prompt layout: a task folder's own prompts/, a bundled task's top-level prompts/<task>/, then
the prompts directories. The wheel itself is built and installed in tests/e2e/test_wheel.py (slow)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from harness.core import paths
from harness.core.errors import HarnessError
from harness.prompts.template import available_prompts, load_prompt
from harness.tasks.task import discover_tasks, find_task, load_task
from tests.conftest import ROOT
from tests.helpers import write_task


def test_checkout_lookup_finds_the_top_level_folders() -> None:
    assert paths.bundled_tasks_dir() == ROOT / "tasks"
    assert paths.bundled_prompts_dir() == ROOT / "prompts"
    assert paths.metric_cases_dir() == ROOT / "tests" / "cases"
    assert set(paths.metric_cases()) == {p.stem for p in (ROOT / "tests" / "cases").glob("*.json")} >= {"choice_metrics", "stats"}
    assert json.loads(paths.metric_cases()["core_metrics"].read_text())["cases"]


def test_every_bundled_task_has_its_variants_in_top_level_prompts() -> None:
    found = discover_tasks()
    assert {"capitals", "arithmetic", "mmlu"} <= set(found)
    for name, yaml_path in found.items():
        task = load_task(yaml_path)
        assert not (task.folder / "prompts").exists(), f"{name}: variants belong in prompts/{name}/"
        own = paths.bundled_prompts(task.folder)
        assert own == ROOT / "prompts" / task.folder.name and own.is_dir()
        variants = available_prompts(task)
        assert set(task.spec.prompts) <= set(variants) and all(p.parent == own for p in variants.values())
    assert sorted(available_prompts(find_task("capitals"))) == ["instruct_statement", "qa_lettered", "qa_plain"]


def test_a_group_member_finds_its_groups_variants() -> None:
    task = load_task(ROOT / "tasks" / "mmlu")
    assert task.spec.subtasks is not None
    member = task.member("anatomy")  # no data needed: the member's folder is the group's
    assert member.name == "mmlu_anatomy" and set(available_prompts(member)) == {"cloze", "lm_eval"}


def test_only_bundled_task_folders_own_a_top_level_prompts_folder(tmp_path: Path) -> None:
    assert paths.bundled_prompts(ROOT / "tests" / "tasks" / "arc_easy") is None
    assert paths.bundled_prompts(write_task(tmp_path / "tasks", "capitals")) is None


def test_dropped_in_task_keeps_its_own_prompts_folder(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "tasks", templates={"plain": "{{ input }}", "qa": "Q: {{ input }}"}))
    assert {n: p.parent for n, p in available_prompts(task).items()} == {"plain": task.folder / "prompts", "qa": task.folder / "prompts"}


def test_a_bundled_tasks_variant_comes_before_a_prompts_dir_one(tmp_path: Path) -> None:
    """As when the variants lived in the task folder: --prompts-dir adds variants, it does not replace them."""
    extra = tmp_path / "mine" / "capitals"
    extra.mkdir(parents=True)
    (extra / "qa_plain.jinja").write_text("mine {{ input }}")
    (extra / "terse.jinja").write_text("{{ input }}")
    task = find_task("capitals")
    found = available_prompts(task, [tmp_path / "mine"])
    assert found["qa_plain"] == ROOT / "prompts" / "capitals" / "qa_plain.jinja" and found["terse"] == extra / "terse.jinja"


def test_a_copied_bundled_task_still_finds_the_bundled_variants_by_name(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "tasks" / "arithmetic", tmp_path / "tasks" / "arithmetic")
    task = find_task("arithmetic", [tmp_path / "tasks"])
    assert task.folder == tmp_path / "tasks" / "arithmetic"
    assert load_prompt(task, "equation").path == ROOT / "prompts" / "arithmetic" / "equation.jinja"


def test_unknown_variant_names_each_folder_searched_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # ./prompts is the bundled prompts/: listed once
    with pytest.raises(HarnessError) as info:
        load_prompt(find_task("capitals"), "qa_plian")
    message = str(info.value)
    assert "Did you mean 'qa_plain'" in message and message.count(str(ROOT / "prompts" / "capitals")) == 1


def test_packaged_copy_wins_over_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel: harness/bundled/<name> inside the package (what setup.py copies there)."""
    package = tmp_path / "site-packages" / "harness"
    for name in paths.BUNDLED:
        (package / paths.BUNDLED_PACKAGE_DIR / name).mkdir(parents=True)
    real = resources.files
    monkeypatch.setattr(resources, "files", lambda anchor: package if anchor == "harness" else real(anchor))
    assert paths.bundled_tasks_dir() == package / "bundled" / "tasks"
    assert paths.bundled_prompts_dir() == package / "bundled" / "prompts"
    assert paths.metric_cases_dir() == package / "bundled" / "cases"
    (package / "bundled" / "tasks" / "capitals").mkdir()
    assert paths.bundled_prompts(package / "bundled" / "tasks" / "capitals") == package / "bundled" / "prompts" / "capitals"
