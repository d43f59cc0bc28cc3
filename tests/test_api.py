"""``harness.Task``: a task.yaml as Python, validated by the same model and run through the same
folder a YAML task is, so it stores exactly what the equivalent YAML task stores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

import harness
from harness.core.errors import HarnessError
from harness.store.store import Store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sst2_csv(tmp_path: Path, n: int = 24) -> Path:
    rows = [json.loads(line) for line in (DATA / "sst2" / "validation.jsonl").read_text(encoding="utf-8").splitlines()[:n]]
    path = tmp_path / "sst2.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sentence", "label"])
        writer.writeheader()
        writer.writerows({"sentence": r["sentence"], "label": r["label"]} for r in rows)
    return path


def stored(db: Path, run_id: str) -> dict[tuple[str, str, int, str], dict[str, object]]:
    store = Store(db)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    return {(cells[r.cell_id].task, cells[r.cell_id].prompt, cells[r.cell_id].shots, r.item_id):
            {"prompt": r.prompt, "response": [{k: v for k, v in x.items() if k != "latency_s"} for x in r.response], "scores": r.scores}
            for r in store.items([run_id])}


FIELDS = {
    "name": "sentiment", "type": "classification", "input": "{{ sentence }}", "target": "{{ label }}",
    "verbalizers": {"negative": "bad", "positive": "good"}, "metrics": ["acc"],
}
TEMPLATES = {"review": "Review: {{ input }}\nSentiment:", "plain": "{{ input }} It was"}


def test_a_python_task_stores_what_the_same_yaml_task_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = sst2_csv(tmp_path)
    task = harness.Task(**FIELDS, data={"test": "sst2.csv", "fewshot": "sst2.csv"}, templates=TEMPLATES)
    assert task.spec.prompts == ["review", "plain"] and task.spec.data.test == str(data)  # relative to here, made absolute
    by_code = harness.run({"tasks": [task], "models": ["scripted:m"], "shots": [0, 2]}, tmp_path / "code" / "h.db")
    folder = tmp_path / "yaml" / "sentiment"
    (folder / "prompts").mkdir(parents=True)
    (folder / "task.yaml").write_text(yaml.safe_dump({**FIELDS, "data": {"test": str(data), "fewshot": str(data)}, "prompts": ["review", "plain"]}))
    for name, text in TEMPLATES.items():
        (folder / "prompts" / f"{name}.jinja").write_text(text)
    by_yaml = harness.run({"tasks": [str(folder)], "models": ["scripted:m"], "shots": [0, 2]}, tmp_path / "yaml" / "h.db")
    one, two = stored(tmp_path / "code" / "h.db", by_code.run_id), stored(tmp_path / "yaml" / "h.db", by_yaml.run_id)
    assert len(one) == 24 * 2 * 2 and one == two
    again = harness.run({"tasks": [task], "models": ["scripted:m"], "shots": [0, 2]}, tmp_path / "code" / "h.db")
    assert again.cache_hits == again.requests and again.backend_requests == 0  # saved to the same folder: the same task
    assert (tmp_path / "code" / "tasks" / "sentiment" / "task.yaml").is_file()
    assert len(Store(tmp_path / "code" / "h.db").runs()) == 2


def test_a_python_task_is_validated_as_a_yaml_one_is() -> None:
    with pytest.raises(HarnessError) as caught:
        harness.Task(**{**FIELDS, "metric": ["acc"]}, data={"test": "x.csv"}, templates=TEMPLATES)
    text = str(caught.value)
    assert "harness.Task('sentiment')" in text and "metric" in text and "did you mean 'metrics'" in text.lower()
