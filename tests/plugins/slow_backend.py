"""A scripted backend that sleeps per request, registered as 'slowscripted', so a test can
SIGKILL a real `harness run` process halfway through."""

from __future__ import annotations

import time
from collections.abc import Sequence

from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult


class SlowScripted(ScriptedBackend):
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        time.sleep(0.02 * len(requests))
        return super().loglikelihood(requests)


if "slowscripted" not in BACKENDS:
    BACKENDS.add("slowscripted", lambda: SlowScripted)
