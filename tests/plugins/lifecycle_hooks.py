"""Fault injection for run-lifecycle tests, driven by environment variables, imported by a real `harness run` process.

HARNESS_TEST_KILL=<moment> SIGKILLs the process itself at that moment:
  claimed      right after the run is claimed (created), before any model call
  write:N      inside the N-th item write transaction, after its statements, before COMMIT
  export:N     while items.jsonl is being written, after N lines (its temp file is left behind)
  finish       after the export, when the run is about to be marked finished

Registers 'logscripted', a scripted backend that appends one line per request to the file
HARNESS_TEST_REQUEST_LOG (when set) and sleeps HARNESS_TEST_SLEEP seconds per request, so a test can
count the requests every process sent in total.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness.store.export as export_module
from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.store.store import Store


class LoggingScripted(ScriptedBackend):
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        time.sleep(float(os.environ.get("HARNESS_TEST_SLEEP", "0")) * len(requests))
        log = os.environ.get("HARNESS_TEST_REQUEST_LOG")
        if log:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:  # one write per batch, O_APPEND: lines from several processes never interleave
                os.write(fd, "".join(f"{os.getpid()}\t{r.key()}\n" for r in requests).encode())
            finally:
                os.close(fd)
        return super().loglikelihood(requests)


if "logscripted" not in BACKENDS:
    BACKENDS.add("logscripted", lambda: LoggingScripted)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(moment: str) -> None:
    name, _, count = moment.partition(":")
    if name == "claimed":
        claim = Store.claim_run

        def claimed(self: Store, *args: Any, **kwargs: Any) -> Any:
            claim(self, *args, **kwargs)
            _die()

        Store.claim_run = claimed  # type: ignore[method-assign]
    elif name == "write":
        write, calls = Store.write_items, [0]

        def dying_write(self: Store, *args: Any, **kwargs: Any) -> None:
            calls[0] += 1
            if calls[0] == int(count):
                open_transaction = self.transaction

                @contextmanager
                def dying() -> Iterator[None]:
                    with open_transaction():
                        yield
                        _die()  # every statement ran, nothing committed

                self.transaction = dying  # type: ignore[method-assign]
            write(self, *args, **kwargs)

        Store.write_items = dying_write  # type: ignore[method-assign]
    elif name == "export":
        write_atomic = export_module.write_atomic

        def dying_atomic(path: Path, lines: Iterable[str]) -> None:
            def counted() -> Iterator[str]:
                for number, line in enumerate(lines):
                    if path.name == "items.jsonl" and number == int(count):
                        _die()
                    yield line

            write_atomic(path, counted())

        export_module.write_atomic = dying_atomic
    elif name == "finish":
        Store.finish_run = lambda self, run_id: _die()  # type: ignore[method-assign]
    else:
        raise ValueError(f"HARNESS_TEST_KILL: unknown moment {moment!r}")


if os.environ.get("HARNESS_TEST_KILL"):
    _install(os.environ["HARNESS_TEST_KILL"])
