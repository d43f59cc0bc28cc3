"""``harness tasks`` counts a JSONL split's rows without parsing it and caches what needs the rows
read (a group's members) by file path, size and mtime (issue 19, item 15: 12-14 s on the benchmark data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.app import main
from harness.tasks.sources import FileSource, count_rows, read_jsonl
from tests.helpers import write_task


def test_count_rows_is_the_number_of_rows_read(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\r\n{"a": "é"}')  # blank lines, CRLF, no final newline
    assert count_rows(FileSource(path)) == len(read_jsonl(path)) == 3


def test_count_rows_leaves_other_formats_to_their_readers(tmp_path: Path) -> None:
    (tmp_path / "test.csv").write_text("a\n1\n")
    assert count_rows(FileSource(tmp_path / "test.csv")) is None


def _listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert main(["tasks", "--tasks-dir", str(tmp_path / "tasks"), "--json"]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_listing_counts_and_recounts_a_changed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_task(tmp_path / "tasks", rows=12)
    assert _listing(tmp_path, capsys)["toy"]["rows"] == 12
    assert (tmp_path / "cache" / "task_counts.json").is_file()
    with open(folder / "test.jsonl", "a") as handle:
        handle.write(json.dumps({"question": "new?", "options": ["x", "y"], "answer": 0}) + "\n")
    assert _listing(tmp_path, capsys)["toy"]["rows"] == 13


def test_a_groups_members_are_cached(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    write_task(tmp_path / "tasks", rows=12, spec={"subtasks": {"by": "answer"}})
    first = _listing(tmp_path, capsys)["toy"]
    assert first["type"].endswith("(group of 3)"), first  # answers 0, 1, 2
    cached = json.loads((tmp_path / "cache" / "task_counts.json").read_text())
    (key,) = [k for k in cached if json.loads(k)[0] == str((tmp_path / "tasks" / "toy" / "test.jsonl").resolve())]
    assert cached[key] == {"rows": 12, "members": 3}
    (tmp_path / "cache" / "task_counts.json").write_text(json.dumps({key: {"rows": 12, "members": 7}}))  # what a cache hit shows
    assert _listing(tmp_path, capsys)["toy"]["type"].endswith("(group of 7)")


def test_an_unreadable_cache_is_recounted(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    write_task(tmp_path / "tasks", rows=5)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "task_counts.json").write_text("{not json")
    assert _listing(tmp_path, capsys)["toy"]["rows"] == 5
