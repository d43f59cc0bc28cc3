"""Demonstrations that cannot leak (issue 15).

Reproducers: a task could not say that two rows belong together (twin sentences, one passage,
one source question), so a selector drawing from the evaluated split could show an item a
demonstration about its own passage; a template that never reads ``shots`` silently turned a
k-shot cell into a zero-shot one; a few-shot pool that is the evaluated split went unsaid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.core.errors import HarnessError
from harness.fewshot.selectors import SELECTORS, item_rng
from harness.prompts.template import PromptTemplate, reads_shots
from harness.tasks.task import load_task
from tests.helpers import MC_TEMPLATE, cli, write_task


@pytest.fixture(autouse=True)
def _tfidf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_EMBEDDINGS", "tfidf")  # knn/mmr without the MiniLM package: fast and offline


def write_twins(root: Path, template: str = MC_TEMPLATE, same_file: bool = True) -> Path:
    """Rows in pairs about one passage: twins share words, so similarity selectors want them most."""
    folder = root / "twins"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {"name": "twins", "type": "multiple_choice",
            "data": {"test": "test.jsonl", "fewshot": "test.jsonl" if same_file else "pool.jsonl"},
            "input": "{{ question }}", "choices": "{{ options }}", "target": "{{ answer }}", "group": "{{ passage }}",
            "prompts": ["plain"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    words = ["apple", "river", "comet", "violin", "desert", "harbor", "glacier", "tiger", "lantern", "marble"]
    rows = [{"id": f"{w}-{j}", "passage": f"p-{w}", "question": f"what about the {w} {w} {w}, part {j}?",
             "options": ["yes", "no"], "answer": j % 2} for w in words for j in range(2)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not same_file:
        (folder / "pool.jsonl").write_text("".join(json.dumps({**r, "id": f"pool-{r['id']}"}) + "\n" for r in rows))
    (folder / "prompts" / "plain.jinja").write_text(template)
    return folder


@pytest.mark.parametrize("name", SELECTORS.names())
@pytest.mark.parametrize("same_file", [True, False])
def test_no_selector_gives_an_item_a_demonstration_of_its_group(tmp_path: Path, name: str, same_file: bool) -> None:
    task = load_task(write_twins(tmp_path, same_file=same_file))
    items, pool = task.items("test"), task.items("fewshot")
    assert {i.group for i in items} == {f"p-{w}" for w in ("apple", "river", "comet", "violin", "desert", "harbor", "glacier",
                                                          "tiger", "lantern", "marble")}
    selector = SELECTORS.get(name)(pool)
    for item in items:
        chosen = selector.select(item, 4, item_rng(3, item.id))
        assert len(chosen) == 4
        assert item.group not in {c.group for c in chosen}, (name, item.id, [c.id for c in chosen])


def test_group_errors_and_pool_too_small(tmp_path: Path) -> None:
    folder = write_twins(tmp_path)
    task = load_task(folder)
    # 20 rows, 2 per group: 18 usable demonstrations for each item
    with pytest.raises(HarnessError, match="18 usable rows.*group"):
        SELECTORS.get("random")(task.items("fewshot")).select(task.items("test")[0], 19, item_rng(0, "x"))
    rows = (folder / "test.jsonl").read_text().splitlines()
    rows[3] = json.dumps({**json.loads(rows[3]), "passage": ""})
    (folder / "test.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(HarnessError, match="field 'group'.*line 4"):
        load_task(folder).items("test")


def test_shipped_passage_tasks_declare_their_group(shared_data: Path) -> None:
    """XQuAD and BoolQ draw demonstrations from the evaluated file, several questions per passage."""
    for name, field in (("xquad", "context"), ("xquad_zh", "context"), ("boolq", "title")):
        task = load_task(Path(__file__).resolve().parents[2] / "tasks" / name, [shared_data])
        assert task.spec.group == f"{{{{ {field} }}}}"
        items = task.items("test")
        selector = SELECTORS.get("first_k")(task.items("fewshot"))
        for item in items[:40]:
            assert all(d.row[field] != item.row[field] for d in selector.select(item, 3, item_rng(0, item.id)))


# -- templates that never show the demonstrations ------------------------------------------
def _template(source: str) -> PromptTemplate:
    return PromptTemplate(name="t", path=Path("t.jinja"), source=source)


def test_reads_shots() -> None:
    assert reads_shots(_template(MC_TEMPLATE)) is True
    assert reads_shots(_template("{{ input }}")) is False
    assert reads_shots(_template("{% macro demos() %}{% for s in shots %}{{ s.input }}{% endfor %}{% endmacro %}{{ demos() }}{{ input }}"))
    assert reads_shots(_template("{% set shots = [] %}{{ shots | length }}{{ input }}")) is False  # its own, not the demonstrations
    assert reads_shots(_template("{{ k }} examples: {{ input }}")) is False


def test_validate_and_run_warn_when_no_template_shows_the_demonstrations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_task(tmp_path, templates={"plain": MC_TEMPLATE, "bare": "Q: {{ input }}\nA:", "also_bare": "{{ input }}"},
                        spec={"prompts": ["plain", "bare", "also_bare"]})
    assert cli("validate", folder, "--shots", "2", "-n", "1") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "never reads `shots`" in line]
    assert len(lines) == 2 and any("bare.jinja" in line for line in lines) and any("also_bare.jinja" in line for line in lines), err
    assert cli("validate", folder, "-n", "1") == 0  # zero-shot: nothing to show, nothing said
    assert "shots" not in capsys.readouterr().err

    db = tmp_path / "h.db"
    assert cli("run", "--task", folder, "--prompt", "plain", "bare", "--shots", "0", "2", "--model", "scripted:m", "--db", db,
               "--quiet", "--limit", "3") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "never reads `shots`" in line]
    assert len(lines) == 1 and "bare.jinja" in lines[0] and "2-shot" in lines[0], err
    from harness.store.store import Store

    store = Store(db)
    assert any("never reads `shots`" in w for w in store.run_config(store.runs()[0].id)["warnings"])


def test_validate_and_run_say_when_the_pool_is_the_evaluated_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = write_task(tmp_path, spec={"data": {"test": "test.jsonl", "fewshot": "test.jsonl"}})
    assert cli("validate", same, "-n", "1", "--shots", "1") == 0
    err = capsys.readouterr().err
    assert sum("few-shot pool is the evaluated split" in line for line in err.splitlines()) == 1, err
    db = tmp_path / "h.db"
    assert cli("run", "--task", same, "--shots", "2", "--model", "scripted:m", "--db", db, "--quiet", "--limit", "4") == 0
    assert sum("few-shot pool is the evaluated split" in line for line in capsys.readouterr().err.splitlines()) == 1
    # zero-shot runs draw no demonstrations: nothing to say
    assert cli("run", "--task", same, "--shots", "0", "--model", "scripted:m", "--db", db, "--quiet", "--limit", "4") == 0
    assert "few-shot pool" not in capsys.readouterr().err

    other = write_task(tmp_path / "other")
    assert cli("validate", other, "-n", "1", "--shots", "1") == 0
    assert "few-shot pool" not in capsys.readouterr().err
    # a group is named in the line
    twins = write_twins(tmp_path / "twins", same_file=True)
    assert cli("validate", twins, "-n", "1", "--shots", "1") == 0
    assert "nor one of its group `{{ passage }}`" in capsys.readouterr().err
