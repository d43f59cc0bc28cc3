"""Real headless Chromium for the tests of anything a person looks at (Debian's package, installed by
scripts/setup.sh): the session fixture lives in conftest.py; these helpers open a page and read its screenshot."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

# what a self-contained HTML file must not hold: anything that loads a script, style or image (an in-document
# url(#gradient), which the inline SVG plots use, is not a load)
LOADS = r"<script|<link|<img|src=|@import|url\((?!#)"

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-extensions", "--disable-default-apps", "--hide-scrollbars"]


def find_chromium() -> str:
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
