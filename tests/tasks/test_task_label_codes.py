"""Classification targets given as label codes (TNEWS-style 100..116 with gaps) mapped through verbalizers
keyed by those codes; the rule that keeps an integer target from ever being both a code and an index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.analysis.aggregates import corpus_items
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from harness.tasks.task import load_task

# 15 labels, codes 100..116 without 105 and 111 (as in CLUE TNEWS)
CODES = [c for c in range(100, 117) if c not in (105, 111)]
WORDS = ["story", "culture", "fun", "sports", "finance", "house", "car", "school", "tech", "army", "travel", "world",
         "stock", "farm", "game"]


def write(root: Path, verbalizers: Any, labels: list[Any], name: str = "codes") -> Path:
    folder = root / name
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "type": "classification", "data": {"test": "test.jsonl"}, "input": "{{ sentence }}",
            "target": "{{ label }}", "verbalizers": verbalizers, "prompts": ["plain"], "metrics": ["acc", "f1_macro"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "test.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "sentence": f"headline {i}", "label": v}) + "\n"
                                             for i, v in enumerate(labels)))
    (folder / "prompts" / "plain.jinja").write_text("Headline: {{ input }}\nTopic:")
    return folder


@pytest.mark.parametrize("keys", ["int", "str"])
def test_integer_targets_are_codes_when_the_verbalizers_are_keyed_by_codes(tmp_path: Path, keys: str) -> None:
    verbalizers = {(c if keys == "int" else str(c)): w for c, w in zip(CODES, WORDS)}
    items = load_task(write(tmp_path, verbalizers, [108, "116", 100, 116.0])).items()
    assert load_task(tmp_path / "codes").labels == tuple(str(c) for c in CODES)  # YAML int keys become their text
    assert [i.target for i in items] == [CODES.index(108), 14, 0, 14]
    assert [i.label for i in items] == ["108", "116", "100", "116"]  # balanced selection groups by the code
    assert items[0].choices == tuple(str(c) for c in CODES) and items[0].verbalizers[CODES.index(108)] == ("school",)


def test_an_unknown_code_names_file_field_line_and_the_nearest_code(tmp_path: Path) -> None:
    folder = write(tmp_path, dict(zip(CODES, WORDS)), [100, 105])
    with pytest.raises(HarnessError) as info:
        load_task(folder).items()
    message = str(info.value)
    assert "task.yaml: field 'target' ('{{ label }}')" in message and "test.jsonl line 2" in message
    assert "label code 105 is not a key of 'verbalizers'" in message and "Did you mean 104?" in message
    assert "100, 101" in message or "100.." in message
    with pytest.raises(HarnessError, match="target 'sports' is not a label code"):
        load_task(write(tmp_path, dict(zip(CODES, WORDS)), ["sports"], name="named")).items()


def test_codes_never_fall_back_to_indices(tmp_path: Path) -> None:
    # keys 1, 2, 3: target 1 is the code 1 (the first label), never index 1; 0 is no code at all
    items = load_task(write(tmp_path, {1: "one", 2: "two", 3: "three"}, [1, 3])).items()
    assert [i.target for i in items] == [0, 2]
    with pytest.raises(HarnessError, match="label code 0 is not a key.*Did you mean 1"):
        load_task(write(tmp_path, {1: "one", 2: "two", 3: "three"}, [0], name="zero")).items()


def test_names_keep_todays_meaning(tmp_path: Path) -> None:
    # not keyed by codes: an integer is an index, a string a label name (as before label codes existed)
    items = load_task(write(tmp_path, {"neg": "bad", "pos": "good"}, [1, "neg", "0"])).items()
    assert [i.target for i in items] == [1, 0, 0]
    with pytest.raises(HarnessError, match="target index 5 is out of range for 2 choices"):
        load_task(write(tmp_path, {"neg": "bad", "pos": "good"}, [5], name="far")).items()


@pytest.mark.parametrize("verbalizers,expected", [
    ({7: "a", "07": "b"}, "keys '7' and '07' are the same label code 7"),
    ({1: "a", "1": "b"}, "repeats the label '1'"),
])
def test_clashing_codes_are_rejected(tmp_path: Path, verbalizers: dict[Any, str], expected: str) -> None:
    folder = write(tmp_path, verbalizers, [1])
    assert "'1': b" in (folder / "task.yaml").read_text() or "'07': b" in (folder / "task.yaml").read_text()  # an int and a str key
    with pytest.raises(HarnessError, match=expected):
        load_task(folder)


def test_run_stores_label_indices_and_reports_codes(tmp_path: Path) -> None:
    folder = write(tmp_path, dict(zip(CODES, WORDS)), [CODES[i % 15] for i in range(30)])
    store = Store(tmp_path / "results" / "h.db")
    spec = ExperimentSpec(tasks=[str(folder)], models=["scripted:m"])
    run = run_experiment(spec, store, show_progress=False).run_id
    rows = store.items([run])
    assert sorted({r.target for r in rows}) == list(range(15))
    (cell,) = store.cells([run])
    references = {k: v.references for k, v in corpus_items(store, cell).items()}
    assert references["r3"] == ("103",) and references["r5"] == (str(CODES[5]),)
    assert all(r.extracted in {str(c) for c in CODES} for r in rows)  # the predicted label is a code too
