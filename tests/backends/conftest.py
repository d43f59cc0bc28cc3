"""Fixtures for the API backend tests: llama-cpp-python's server (session-wide, started on
first use) and a place to put figures that belong in the test output (agreement rates)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

REPORT: list[str] = []


@pytest.fixture(scope="session")
def llama_url() -> Iterator[str]:
    """Base URL of a real llama.cpp server running the embedded Gemma 3 270M GGUF."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python is not installed: CMAKE_ARGS=-DLLAVA_BUILD=OFF pip install 'harness[server]' (scripts/test.sh does it)")
    from tests.backends.llama_server import llama_server

    with llama_server() as url:
        yield url


@pytest.fixture
def report() -> Any:
    """``report("line")`` prints the line in pytest's terminal summary."""
    return REPORT.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("API backend figures")
        for line in REPORT:
            terminalreporter.write_line(line)
