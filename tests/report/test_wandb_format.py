"""``harness export --format wandb`` with WANDB_MODE=offline: one W&B run per cell, read back from
the run files W&B wrote, record by record with W&B's own protobuf classes (wandb 0.31 has no
Python reader of its transaction log; its framing is LevelDB's log format, read below)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.cli.app import main
from harness.store.store import Store

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BLOCK = 32768


def records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (':W&B', magic, version), then
    LevelDB log blocks of (crc32, length, type) + data; types full/first/middle/last."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending, out = 7, b"", []
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 0:
            position += BLOCK - position % BLOCK if position % BLOCK else 0
            continue
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def flat(items: Any) -> dict[str, Any]:
    """Summary/history items by key (a nested key joined by dots)."""
    return {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in items}


def test_a_run_exported_to_wandb_offline_holds_each_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is installed by scripts/test.sh")
    monkeypatch.setenv("WANDB_MODE", "offline")
    db = str(tmp_path / "h.db")
    assert main(["run", "--task", "arc_easy", "--data-dir", str(DATA), "--shots", "0", "--model", "scripted:m", "--limit", "12",
                 "--db", db, "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["export", run_id, "--format", "wandb", "-o", str(tmp_path / "out"), "--db", db, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    store = Store(db)
    cells = {c.cell_id: c for c in store.cells([run_id])}
    files = sorted((tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == len(cells) == len(out["wandb_runs"]) == 2
    for path in files:
        found = records(path)
        run = next(r.run for r in found if r.WhichOneof("record_type") == "run")
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        cell = cells[config["cell_id"]["value"] if isinstance(config["cell_id"], dict) else config["cell_id"]]
        assert run.run_group == run_id and run.project == "harness" and cell.prompt in run.display_name
        summary = flat(i for r in found if r.WhichOneof("record_type") == "summary" for i in r.summary.update)
        history = flat(i for r in found if r.WhichOneof("record_type") == "history" for i in r.history.item)
        scores = [i.scores["acc"] for i in store.items([run_id], cell.cell_id)]
        assert summary["acc"] == pytest.approx(sum(scores) / len(scores)) and "acc_stderr" in summary
        assert history["items._type"] == "table-file" and history["items.nrows"] == 12
        written = json.loads(next(path.parent.glob("files/media/table/items_*.table.json")).read_text(encoding="utf-8"))
        assert written["columns"][0] == "item_id" and len(written["data"]) == 12
    # W&B's own CLI takes them as runs it would upload (wandb sync --dry-run: nothing leaves the machine)
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", *map(str, (p.parent for p in files))],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "offline"})
    assert f"Would sync {len(files)} run(s)" in listed.stdout + listed.stderr, listed.stderr[-1000:]
