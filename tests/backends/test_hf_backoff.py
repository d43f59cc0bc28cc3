"""Automatic batch size: the HF backend halves its budgets on out-of-memory and keeps what worked
(no GPU here, so the model call is replaced by one that runs out of memory above a budget)."""

from __future__ import annotations

import pytest

from harness.core.errors import HarnessError

torch = pytest.importorskip("torch")


def _backend(budget: int) -> object:
    from harness.backends.hf.backend import HFBackend

    backend = object.__new__(HFBackend)  # no model: only the budget logic is under test
    backend.torch, backend.device = torch, "cpu"
    backend.max_batch_tokens, backend.max_logit_rows, backend.max_decode_rows = budget, 1024, 256
    backend.max_head_rows = 2048
    backend.counters = {"oom_backoffs": 0}
    return backend


def test_out_of_memory_halves_the_budget_until_it_fits_and_keeps_it() -> None:
    backend = _backend(65536)
    seen: list[int] = []

    def work() -> str:
        seen.append(backend.max_batch_tokens)
        if backend.max_batch_tokens > 10000:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "done"

    assert backend._with_backoff(work) == "done"
    assert seen == [65536, 32768, 16384, 8192]
    assert backend.max_batch_tokens == 8192 and backend.max_logit_rows == 128 and backend.max_head_rows == 256 and backend.max_decode_rows == 32
    assert backend.counters["oom_backoffs"] == 3
    assert backend._with_backoff(work) == "done" and seen[-1] == 8192  # the next call starts where it fitted


def test_out_of_memory_at_the_smallest_budget_is_a_user_error() -> None:
    backend = _backend(256)

    def work() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(HarnessError, match="out of memory on cpu even with batches of 64 tokens"):
        backend._with_backoff(work)
