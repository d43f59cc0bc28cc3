"""The HTML report: one self-contained file, opened in real headless Chromium (Debian's
package, installed by scripts/setup.sh) to check that the plots and tables render."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.store.store import Store
from tests.decide_support import toy_task
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-extensions", "--disable-default-apps", "--hide-scrollbars"]


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium package)")
    return path


def browse(chromium: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into an array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], dtype=np.uint8).astype(np.int32)
        prev = out[y - 1] if y else np.zeros(stride, dtype=np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + prev) % 256
        else:  # 1 (sub), 3 (average), 4 (Paeth) depend on the left neighbour: decode bytewise
            row = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                left = row[i - channels] if i >= channels else 0
                up, corner = prev[i], (prev[i - channels] if i >= channels else 0)
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (line[i] + pred) % 256
        out[y] = row
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def has_colour(image: np.ndarray, hex_colour: str, tolerance: int = 12, at_least: int = 30) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    close = np.all(np.abs(image.astype(np.int32) - rgb) <= tolerance, axis=2)
    return int(close.sum()) >= at_least


def check_report(chromium: str, report: Path, tmp: Path, cells: int, tasks: int = 1) -> str:
    """Open the report in Chromium; check the DOM (tables, plots) and the screenshot (coloured marks)."""
    source = report.read_text()
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", source), "the report must not load anything"
    dom = browse(chromium, report, tmp, "--dump-dom").stdout
    assert dom.count('<table class="ranked"') == tasks
    assert len(re.findall(r"<table class=\"ranked\".*?</table>", dom, re.S)) == tasks
    rows = sum(block.count("<tr data-verdict=") for block in re.findall(r"<table class=\"ranked\".*?</table>", dom, re.S))
    assert rows == cells
    for plot in ("ci-plot", "forest-plot", "heatmap"):
        assert dom.count(f'<svg class="{plot}"') == tasks
    assert dom.count("<circle") == cells  # one mean marker per cell
    assert dom.count('class="hm-cell"') >= cells
    shot = tmp / "shot.png"
    browse(chromium, report, tmp, f"--screenshot={shot}", "--window-size=1400,1600")
    image = read_png(shot)
    assert image.shape[1] == 1400 and image.std() > 10  # not blank
    assert has_colour(image, "#1b7837")  # the best cell's marks and badge were painted
    return dom


def test_report_renders_in_chromium(tmp_path: Path, db_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=80)
    assert cli("run", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--shots", "0", "2",
               "--model", "skilled:0.85", "--model", "skilled:0.35", "--quiet") == 0
    report = tmp_path / "report.html"
    capsys.readouterr()
    assert cli("report", "--db", db_path, "-o", report) == 0
    assert "wrote" in capsys.readouterr().out
    dom = check_report(chromium, report, tmp_path, cells=8)
    image = read_png(tmp_path / "shot.png")
    assert has_colour(image, "#b2182b")  # the weaker model's cells are "worse": a second colour
    assert "Items where the best cell and #" in dom and "Prompt sensitivity" in dom and "Kendall" in dom
    assert "skilled:0.35" in dom and "p adj" in dom and "may be best (95%)" in dom and "worse than" in dom


def test_ab_report_renders_in_chromium(tmp_path: Path, db_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]) -> None:
    toy_task(tmp_path / "tasks", rows=60)
    page = tmp_path / "ab.html"
    assert cli("ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--base", "skilled:0.35",
               "--tuned", "skilled:0.85", "--quiet", "--html", page) == 0
    terminal = capsys.readouterr().out
    source = page.read_text()
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", source), "the report must not load anything"
    dom = browse(chromium, page, tmp_path, "--dump-dom").stdout
    assert dom.count("<table class=\"ab\"") == 1 and dom.count("<tr class=\"pooled\">") == 1
    assert "verdict:</b> tuned is better than base" in dom and "tuned is better than base" in terminal
    assert "Δ = tuned − base" in dom and "items where base and tuned disagree" in dom


@pytest.mark.slow
def test_arc_easy_prompts_and_shots_end_to_end(tmp_path: Path, db_path: Path, shared_data: Path, chromium: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Embedded model on ARC-Easy: 3 prompt variants x {0, 5} shots (a few items; the 300-item
    run is recorded in docs/compare.md), then compare --json and the HTML report in Chromium."""
    task = ROOT / "tests" / "tasks" / "arc_easy"
    assert cli("run", "--db", db_path, "--task", task, "--data-dir", shared_data, "--shots", "0", "5", "--limit", "6", "--quiet") == 0
    capsys.readouterr()
    assert cli("compare", "--db", db_path, "--json", "--full") == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert len(data["cells"]) == 6 and {c["prompt"] for c in data["cells"]} == {"lm_eval", "lettered", "science_teacher"}
    assert all(c["n"] == 6 and 0 <= c["ci_low"] <= c["mean"] <= c["ci_high"] <= 1 for c in data["cells"])
    assert all(c["p_adjusted"] is not None for c in data["cells"][1:]) and data["cells"][0]["may_be_best"]
    assert data["cells"][0]["verdict"] == "best" and {c["verdict"] for c in data["cells"][1:]} <= {"worse", "inconclusive"}
    assert all("MDE" in c["verdict_detail"] for c in data["cells"] if c["verdict"] == "inconclusive")
    assert {(s["shots"], s["n_variants"]) for s in data["spread"]} == {(0, 3), (5, 3)}
    assert len(data["rank_stability"]) == 1  # 0-shot vs 5-shot order of the three variants
    report = tmp_path / "arc.html"
    assert cli("report", "--db", db_path, "-o", report) == 0
    dom = check_report(chromium, report, tmp_path, cells=6)
    assert "arc_easy_example" in dom and "science_teacher" in dom
    assert len(Store(db_path).runs()) == 1
