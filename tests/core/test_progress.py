"""Progress where stderr is not a terminal: timed lines with items, elapsed and time left, never a bar."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable

import pytest

from harness.core.progress import _Lines, clock, progress_bar, progress_line, progress_lines, time_left, verbose, verbose_output


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_time_left_is_the_average_pace_so_far_counted_down_between_updates() -> None:
    assert time_left(0, 100, 5.0) == "time left: estimating"
    assert time_left(25, 100, 10.0) == "about 0:30 left"
    assert time_left(25, 100, 10.0, since=12.0) == "about 0:18 left"  # 12 s after that update
    assert time_left(25, 100, 10.0, since=45.0) == "almost done"  # slower than the pace so far: never negative
    assert time_left(100, 100, 10.0) == "done"
    assert clock(59.6) == "1:00" and clock(3723) == "1:02:03" and clock(-1) == "0:00"
    assert progress_line("evaluating", 64, 180, 21.0) == "evaluating: 64/180 items (35%), 0:21 elapsed, about 0:38 left"


def test_lines_come_every_interval_from_the_start_with_an_eta() -> None:
    """A line while the model is still loading (0 items, estimating), then with an ETA; one closing line."""
    stream, now = io.StringIO(), FakeClock()
    with progress_lines("evaluating", 200, stream, every_s=10.0, now=now) as advance:  # the fake clock: the thread's ticks do nothing
        state = _state(advance)
        now.t += 10
        state.tick()  # model still loading
        now.t += 5
        advance(50)  # at 0:15
        state.tick()  # not due: 5 s since the last line
        now.t += 5
        state.tick()  # 50 items in 15 s: 45 s left at 0:15, 40 s at 0:20
        now.t += 10
        state.tick()  # the estimate counts down between updates
        advance(150)
        now.t += 20
        state.tick()  # all done: no progress line, only the closing one
    lines = stream.getvalue().splitlines()
    assert lines == [
        "evaluating: 0/200 items (0%), 0:10 elapsed, time left: estimating",
        "evaluating: 50/200 items (25%), 0:20 elapsed, about 0:40 left",
        "evaluating: 50/200 items (25%), 0:30 elapsed, about 0:30 left",
        "evaluating: 200/200 items in 0:50",
    ]


def test_a_short_run_writes_nothing() -> None:
    stream = io.StringIO()
    with progress_lines("evaluating", 10, stream, every_s=10.0) as advance:
        advance(10)
    assert stream.getvalue() == ""


def test_the_thread_writes_lines_while_nothing_advances() -> None:
    stream = io.StringIO()
    with progress_lines("evaluating", 10, stream, every_s=0.05) as advance:
        time.sleep(0.4)
        advance(4)
        time.sleep(0.3)
    text = stream.getvalue()
    assert "evaluating: 0/10 items (0%)" in text and "time left: estimating" in text
    assert re.search(r"evaluating: 4/10 items \(40%\), 0:0\d elapsed, (about 0:0\d left|almost done)", text), text
    assert text.splitlines()[-1].startswith("evaluating: 4/10 items in 0:0")


def test_not_a_terminal_means_lines_on_stderr_never_a_bar(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.core import progress

    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.05)
    with progress_bar("evaluating", 8) as advance:
        time.sleep(0.3)
        advance(8)
    captured = capsys.readouterr()
    assert captured.out == "" and "evaluating: 0/8 items" in captured.err and "\r" not in captured.err and "\x1b[" not in captured.err
    with progress_bar("evaluating", 8, enabled=False) as advance:  # --quiet, --json
        time.sleep(0.2)
        advance(8)
    assert capsys.readouterr().err == ""


def test_verbose_output_is_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_VERBOSE", raising=False)
    assert not verbose()
    with verbose_output(True):
        assert verbose() and os.environ["HARNESS_VERBOSE"] == "1"
    assert not verbose() and "HARNESS_VERBOSE" not in os.environ
    monkeypatch.setenv("HARNESS_VERBOSE", "0")
    assert not verbose()
    with verbose_output(False):
        assert not verbose()
    monkeypatch.setenv("HARNESS_VERBOSE", "yes")
    assert verbose()


def _state(advance: Callable[[int], None]) -> _Lines:
    """The ``_Lines`` behind an ``advance`` (its bound method), to tick it by hand."""
    state = getattr(advance, "__self__")
    assert isinstance(state, _Lines)
    return state
