"""Progress for a person, and how much of the libraries' own chatter reaches them.

On a terminal: a bar with items done, elapsed time and time left. Anywhere else (a pipe, a log
file, CI): a plain line on stderr about every ``LINE_EVERY_S`` seconds, with the same numbers,
so a long run in a log is never silent and never a broken bar. Runs shorter than that print
nothing. ``verbose()`` (``--verbose`` / ``HARNESS_VERBOSE=1``) lets model libraries show their
loading bars and deprecation warnings; by default the backends keep them quiet.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

LINE_EVERY_S = 10.0
VERBOSE_ENV = "HARNESS_VERBOSE"


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def verbose() -> bool:
    """Whether library output (loading bars, deprecation warnings, info logs) may reach the screen."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def verbose_output(on: bool) -> Iterator[None]:
    """``verbose()`` is ``on`` inside (the CLI's ``--verbose``); the previous setting is restored after."""
    before = os.environ.get(VERBOSE_ENV)
    if on:
        os.environ[VERBOSE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = before


def clock(seconds: float) -> str:
    """'0:42', '12:05', '1:02:03'."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_left(done: int, total: int, elapsed: float, since: float = 0.0) -> str:
    """'about 0:42 left': the pace up to the last update (``done`` items after ``elapsed`` seconds), counted
    down by the ``since`` seconds that have passed after it, so the estimate falls between updates."""
    if done <= 0 or elapsed <= 0:
        return "time left: estimating"
    if done >= total:
        return "done"
    left = elapsed * (total - done) / done - since
    return f"about {clock(left)} left" if left >= 1 else "almost done"


def progress_line(label: str, done: int, total: int, elapsed: float, since: float = 0.0) -> str:
    """'evaluating: 64/180 items (35%), 0:21 elapsed, about 0:38 left' (``elapsed``: at the last update)."""
    percent = 100 * done // total if total else 100
    return f"{label}: {done}/{total} items ({percent}%), {clock(elapsed + since)} elapsed, {time_left(done, total, elapsed, since)}"


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``: a bar on a terminal, timed lines on stderr elsewhere, nothing when not ``enabled``."""
    if not enabled or total <= 0:
        yield lambda n: None
    elif interactive():
        with _bar(label, total) as advance:
            yield advance
    else:
        with progress_lines(label, total, sys.stderr, every_s=LINE_EVERY_S) as advance:
            yield advance


class _Lines:
    """The line mode's state: items done, and when the last line was written (``tick`` writes one when due)."""

    def __init__(self, label: str, total: int, stream: TextIO, every_s: float, now: Callable[[], float]) -> None:
        self.label, self.total, self.stream, self.every_s, self.now = label, total, stream, every_s, now
        self.started = self.last = self.updated = now()
        self.done = 0
        self.printed = False
        self.lock = threading.Lock()

    def advance(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.updated = self.now()

    def tick(self) -> None:
        with self.lock:
            moment = self.now()
            if moment - self.last >= self.every_s and self.done < self.total:
                line = progress_line(self.label, self.done, self.total, self.updated - self.started, moment - self.updated)
                print(line, file=self.stream, flush=True)
                self.last, self.printed = moment, True

    def close(self) -> None:
        if self.printed:
            print(f"{self.label}: {self.done}/{self.total} items in {clock(self.now() - self.started)}", file=self.stream, flush=True)


@contextmanager
def progress_lines(
    label: str, total: int, stream: TextIO, every_s: float = LINE_EVERY_S, now: Callable[[], float] = time.monotonic
) -> Iterator[Callable[[int], None]]:
    """A line on ``stream`` every ``every_s`` seconds from the start (a thread writes it, so a model that is
    still loading shows too), and a closing line if any was written; a run that ends sooner writes nothing."""
    lines = _Lines(label, total, stream, every_s, now)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(min(1.0, every_s / 4)):
            lines.tick()

    ticker = threading.Thread(target=beat, name="harness-progress", daemon=True)
    ticker.start()
    try:
        yield lines.advance
    finally:
        stop.set()
        ticker.join()
        lines.close()


@contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    started = time.monotonic()

    class TimeLeft(ProgressColumn):
        """``time_left`` at each refresh: from the first update on, and counting down between updates
        (rich's own column waits for several updates and freezes between them)."""

        def render(self, task: Task) -> Text:
            at = float(task.fields["at"])
            return Text(time_left(int(task.completed), total, at - started, time.monotonic() - at))

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeLeft())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=total, at=started)

        def advance(n: int) -> None:
            progress.update(task, advance=n, at=time.monotonic())

        yield advance
