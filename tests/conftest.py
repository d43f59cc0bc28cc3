"""Shared fixtures. Fast tests use the scripted backend; `slow` ones the real embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import find_chromium

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the user's own task/prompt/data directories; CI-style quiet output."""
    for name in ("HARNESS_TASKS_DIR", "HARNESS_PROMPTS_DIR", "HARNESS_DATA_DIR", "HARNESS_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real benchmark JSONL, read in place (never copied into the project)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"benchmark data folder {SHARED_DATA} is missing (it sits beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded Gemma 3 270M as an HF folder (converted once into the user cache)."""
    from harness.backends.hf.embedded import embedded_model_path

    return embedded_model_path()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results" / "harness.db"


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Path:
    """A random 2-layer Gemma 3 with the embedded tokenizer (tests/tiny_gemma.py): real Trainer, fast steps."""
    from tests.tiny_gemma import build_tiny_gemma

    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"), embedded_model)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary (tests/browser.py opens pages with it)."""
    return find_chromium()
