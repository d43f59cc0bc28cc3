"""A closed pipe: `harness tasks --json | head -c 10` ends quietly; a BrokenPipeError from anything but stdout is
an error, and main() never closes the process's stderr (tests, notebooks and the viewer call it in-process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness.cli.app as app

ROOT = Path(__file__).resolve().parents[2]


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    done = subprocess.run(f"'{sys.executable}' -m harness.cli tasks --json | head -c 10", shell=True, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.startswith("[") and len(done.stdout) == 10
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_another_broken_pipe_is_raised_and_stderr_stays_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> None:
        raise BrokenPipeError("a server's socket")

    monkeypatch.setattr(app, "check_dirs", broken)
    stderr = sys.stderr
    with pytest.raises(BrokenPipeError):
        app.main(["tasks"])
    assert sys.stderr is stderr and not sys.stderr.closed


def test_a_reader_that_left_before_anything_was_buffered_is_still_not_an_error() -> None:
    """The write that failed may leave nothing to flush (it was the flush that failed): stdout is then asked itself.
    This was a flaky traceback under `harness tasks --json | head -c 10`."""
    code = ("import os, sys\nfrom harness.cli import app\nr, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "def broken(args):\n    raise BrokenPipeError(32, 'Broken pipe')\napp.check_dirs = broken\nsys.exit(app.main(['tasks']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
