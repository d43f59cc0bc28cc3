"""Data in the formats users already have: CSV/TSV, a JSON array, parquet, a save_to_disk folder.
Each fixture is written here from the real rows in ../shared/data, and the task it feeds must give
exactly the items and prompts of the JSONL it came from; each malformed input gives one clear error."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.core.paths import bundled_dir
from harness.runner.planning import plan, prepare, selector_for
from harness.runner.spec import ExperimentSpec
from harness.tasks.sources import read_rows
from harness.tasks.task import find_task, load_task

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
N = 60


def jsonl_rows(relative: str) -> list[dict[str, Any]]:
    lines = (DATA / relative).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()][:N]


def retargeted_task(tmp_path: Path, name: str, suffix: str) -> Path:
    """The bundled task ``name`` with every split pointing at ``<split file>.<suffix>`` under tmp_path/data."""
    spec = yaml.safe_load((bundled_dir("tasks") / name / "task.yaml").read_text(encoding="utf-8"))
    spec["data"] = {split: str(Path(value).with_suffix(suffix)) if suffix else str(Path(value).with_suffix("")) for split, value in spec["data"].items()}
    folder = tmp_path / "tasks" / name
    folder.mkdir(parents=True)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder


def limited_jsonl(tmp_path: Path, name: str) -> Path:
    """The bundled task on the first N rows of each split, as JSONL (the reference)."""
    spec = yaml.safe_load((bundled_dir("tasks") / name / "task.yaml").read_text(encoding="utf-8"))
    for value in spec["data"].values():
        target = tmp_path / "jsonl" / value
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(r) + "\n" for r in jsonl_rows(value)), encoding="utf-8")
    return tmp_path / "jsonl"


def write_split_files(tmp_path: Path, name: str, suffix: str) -> Path:
    spec = yaml.safe_load((bundled_dir("tasks") / name / "task.yaml").read_text(encoding="utf-8"))
    for value in spec["data"].values():
        rows = jsonl_rows(value)
        target = (tmp_path / "data" / value).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        write(rows, target)
    return tmp_path / "data"


def write(rows: list[dict[str, Any]], target: Path) -> None:
    if target.suffix in (".csv", ".tsv"):
        with open(target, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if target.suffix == ".tsv" else ",")
            writer.writeheader()
            for row in rows:  # what a JSONL -> CSV export writes: text as is, other values as JSON
                writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
    elif target.suffix == ".json":
        target.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif target.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), target)
    else:  # a save_to_disk folder
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(target.with_suffix("")))


def prompts(task_dir: Path, data_dir: Path, shots: int) -> list[str]:
    spec = ExperimentSpec(tasks=[str(task_dir)], data_dirs=[str(data_dir)], shots=[shots], limit=8)
    out = []
    for cell in plan(spec):
        selector = selector_for(cell)
        out += [str(prepare(cell, pos, item, selector).rendered.prompt) for pos, item in enumerate(cell.items)]
    return out


@pytest.mark.parametrize(("name", "suffix"), [("sst2", ".csv"), ("sst2", ".tsv"), ("boolq", ".csv"), ("arc_easy", ".parquet"),
                                              ("arc_easy", ".json"), ("arc_easy", ""), ("boolq", ".parquet")])
def test_each_format_gives_the_items_and_prompts_of_the_jsonl(tmp_path: Path, name: str, suffix: str) -> None:
    reference_data = limited_jsonl(tmp_path, name)
    reference = find_task(name, data_dirs=[reference_data])
    data = write_split_files(tmp_path, name, suffix or ".arrow")
    folder = retargeted_task(tmp_path, name, suffix)
    task = load_task(folder, data_dirs=[data])
    assert task.items("test") == reference.items("test") and len(task.items("test")) == N
    assert prompts(folder, data, 3) == prompts(bundled_dir("tasks") / name, reference_data, 3)


def test_provenance_hashes_a_folder_by_its_content(tmp_path: Path) -> None:
    from harness.tasks.sources import fingerprint

    rows = jsonl_rows("arc_easy/test.jsonl")
    write(rows, tmp_path / "a.arrow")
    write(rows, tmp_path / "b.arrow")
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    write(rows[:-1], tmp_path / "c.arrow")
    assert fingerprint(tmp_path / "c") != fingerprint(tmp_path / "a")


def test_csv_cells_that_are_json_become_values_and_text_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('id,n,ok,xs,text,zero\n001,1,true,"[1, 2]",- fine [really],"""1"""\n', encoding="utf-8")
    assert read_rows(path) == [(1, {"id": "001", "n": 1, "ok": True, "xs": [1, 2], "text": "- fine [really]", "zero": "1"})]


BAD = [
    ("bad.csv", "sentence,label\ngood,1\nbad,0,extra\n", "bad.csv line 3 (row 2): 3 fields, but the header (line 1) names 2"),
    ("open.csv", 'sentence,label\n"never closed,1\n', "not valid CSV"),
    ("dup.csv", "sentence,sentence\na,b\n", "line 1: the header names sentence more than once"),
    ("empty.csv", "", "empty file; expected a header line"),
    ("latin1.csv", "sentence,label\ncaf\xe9,1\n".encode("latin-1"), "latin1.csv line 2, column 4 (byte 18): not UTF-8 text (byte 0xe9)"),
    ("latin1.jsonl", '{"a": 1}\n{"a": "caf\xe9"}\n'.encode("latin-1"), "latin1.jsonl line 2, column 11 (byte 19): not UTF-8 text"),
    ("latin1.json", '[{"a": 1},\n{"a": "\xff"}]'.encode("latin-1"), "latin1.json line 2, column 8 (byte 18): not UTF-8 text"),
    ("deep.jsonl", '{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "deep.jsonl line 2: JSON nested too deeply"),
    ("deep.json", '[{"a": 1},\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}]\n", "deep.json line 2: JSON nested too deeply"),
    ("obj.json", '{"items": []}', "expected a JSON array of objects"),
    ("scalars.json", "[1, 2]", "item 1: expected an object"),
    ("broken.json", '[{"a": 1},\n{"a": }]', "line 2: not valid JSON"),
    ("junk.parquet", b"PAR1 not really", "not a readable parquet file"),
    ("sheet.xlsx", b"PK", "no reader for '.xlsx' files"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_files_give_one_clear_error(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(HarnessError) as caught:
        read_rows(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_parquet_file_without_a_column_the_task_reads_names_the_row_and_fields(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "label"} for r in jsonl_rows("sst2/validation.jsonl")]
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    write(rows, data / "validation.parquet")
    task = load_task(retargeted_task(tmp_path, "sst2", ".parquet"), data_dirs=[tmp_path / "data"])
    with pytest.raises(HarnessError) as caught:
        task.items("test")
    text = str(caught.value)
    assert "field 'target'" in text and "validation.parquet row 1" in text and "Fields in that row: sentence" in text


def test_a_dataset_dict_folder_asks_for_a_split(tmp_path: Path) -> None:
    import datasets

    rows = jsonl_rows("sst2/validation.jsonl")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(HarnessError, match=r"a DatasetDict folder \(splits .*\); name one split's folder: .*dd/train"):
        read_rows(tmp_path / "dd")
    assert len(read_rows(tmp_path / "dd" / "test")) == N


def test_the_cli_refuses_a_bad_csv_with_exit_2_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = retargeted_task(tmp_path, "sst2", ".csv")
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    (data / "validation.csv").write_text("sentence,label\ngood,1\nbad,0,extra\n", encoding="utf-8")
    code = main(["run", "--task", str(folder), "--data-dir", str(tmp_path / "data"), "--model", "scripted:x", "--db", str(tmp_path / "h.db"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "validation.csv line 3 (row 2): 3 fields" in err and "Traceback" not in err


# -- a hub dataset, offline from a local cache -------------------------------------------------
HUB_SPLITS = {"test": "arc_easy/test.jsonl", "validation": "arc_easy/validation.jsonl"}


def hub_cache(tmp_path: Path) -> Path:
    """The cache a `load_dataset("allenai/ai2_arc", "ARC-Easy")` leaves behind, made here: the
    parquet builder prepares the Arrow files, which are laid out as the hub dataset's (what
    datasets' offline mode reads: <cache>/allenai___ai2_arc/ARC-Easy/0.0.0/<hash>/)."""
    import shutil

    import datasets

    files = {}
    for split, relative in HUB_SPLITS.items():
        files[split] = str(tmp_path / f"{split}.parquet")
        write(jsonl_rows(relative), Path(files[split]))
    build = tmp_path / "build"
    datasets.load_dataset("parquet", data_files=files, cache_dir=str(build))
    prepared = next(build.rglob("dataset_info.json")).parent
    cache = tmp_path / "hf-cache"
    target = cache / "allenai___ai2_arc" / "ARC-Easy" / "0.0.0" / "210d026faf9955653af8916fad021475a3f00453"
    target.mkdir(parents=True)
    for file in prepared.iterdir():
        shutil.copy(file, target / file.name.replace("parquet-", "ai2_arc-"))
    info = json.loads((target / "dataset_info.json").read_text(encoding="utf-8"))
    info.update(builder_name="ai2_arc", config_name="ARC-Easy", dataset_name="ai2_arc")
    (target / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return cache


def hub_task(tmp_path: Path, split: str = "test") -> Path:
    spec = yaml.safe_load((bundled_dir("tasks") / "arc_easy" / "task.yaml").read_text(encoding="utf-8"))
    hub = {"path": "allenai/ai2_arc", "name": "ARC-Easy"}
    spec["data"] = {"test": {"hf": {**hub, "split": split}}, "fewshot": {"hf": {**hub, "split": "validation"}}}
    folder = tmp_path / "tasks" / f"arc_hub_{split}"
    folder.mkdir(parents=True)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder


def offline(cache: Path) -> dict[str, str]:
    import os

    return {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}


ROOT = Path(__file__).resolve().parents[2]


def test_a_hub_dataset_from_the_local_cache_gives_the_items_and_prompts_of_the_jsonl(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.tasks.hub_items import described

    env = offline(hub_cache(tmp_path))
    done = subprocess.run([sys.executable, "-m", "tests.tasks.hub_items", str(hub_task(tmp_path)), str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    via_hub = json.loads(done.stdout.strip().splitlines()[-1])
    reference = limited_jsonl(tmp_path / "ref", "arc_easy")
    assert via_hub == json.loads(json.dumps(described(str(bundled_dir("tasks") / "arc_easy"), str(reference))))
    assert len(via_hub) == 8 and all(len(row[5]) == 3 for row in via_hub)
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", str(hub_task(tmp_path / "b")), "--model", "scripted:x",
                          "--shots", "1", "--limit", "4", "--db", str(tmp_path / "h.db"), "--quiet", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    config = json.loads(subprocess.run([sys.executable, "-c", "import json,sys; from harness.store.store import Store; "
                                        f"s=Store({str(tmp_path / 'h.db')!r}); print(json.dumps(s.run_config(s.runs()[0].id)))"],
                                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120).stdout)
    data = next(iter(config["tasks"].values()))["data"]
    assert set(data) == {"test", "fewshot"} and all(len(v) == 64 for v in data.values())  # the hub splits' provenance


@pytest.mark.parametrize(("split", "path", "message"), [
    ("nope", "allenai/ai2_arc", 'Unknown split "nope". Should be one of'),
    ("test", "allenai/not_cached", "not found on the hub nor in the local cache"),
])
def test_a_hub_split_or_dataset_that_is_not_there_is_one_clear_error(tmp_path: Path, split: str, path: str, message: str) -> None:
    import subprocess
    import sys

    folder = hub_task(tmp_path, split)
    text = (folder / "task.yaml").read_text(encoding="utf-8").replace("allenai/ai2_arc", path)
    (folder / "task.yaml").write_text(text, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", str(folder), "--model", "scripted:x", "--limit", "2",
                          "--db", str(tmp_path / "h.db"), "--quiet"], cwd=ROOT, env=offline(hub_cache(tmp_path)), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
