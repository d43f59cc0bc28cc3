"""Bounded echoes (``shorten``/``clip``) and the folder check (``existing_dir``) every layer uses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.core.errors import HarnessError, clip, existing_dir, shorten


def test_shorten_bounds_long_wide_and_deep_values_quickly() -> None:
    assert shorten("abc") == "'abc'"
    assert len(shorten("x" * 10**7)) <= 200
    wide = {f"k{i}": list(range(1000)) for i in range(1000)}
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    start = time.perf_counter()
    assert len(shorten(wide)) <= 200 and len(shorten(deep)) <= 200
    assert time.perf_counter() - start < 0.5
    assert "..." in shorten("x" * 50, limit=20) and len(shorten("x" * 50, limit=20)) <= 20


def test_clip_keeps_short_text_and_marks_a_cut() -> None:
    assert clip("short") == "short"
    assert clip("y" * 500) == "y" * 197 + "..."


def test_existing_dir_names_the_option_and_the_folder(tmp_path: Path) -> None:
    assert existing_dir(tmp_path, "--data-dir") == tmp_path
    with pytest.raises(HarnessError, match=r"--data-dir: folder '.*missing' does not exist"):
        existing_dir(tmp_path / "missing", "--data-dir")
    (tmp_path / "file").write_text("")
    with pytest.raises(HarnessError, match="is not a folder"):
        existing_dir(tmp_path / "file", "data_dirs in x.yaml")
    with pytest.raises(HarnessError) as info:
        existing_dir("z" * 5000, "--tasks-dir")
    assert len(str(info.value)) < 300
