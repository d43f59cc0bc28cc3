"""Retry policy, an adaptive concurrency limiter and the counters that report both.

Why adaptive: a fixed ``--concurrency`` either under-uses a fast server or keeps hammering
one that answers 429. The limiter starts at the user's bound, halves it on every 429 (and
stops starting new requests until the server's ``Retry-After`` has passed), then grows it
back by one after a window of successes (AIMD, as TCP does). Retries use exponential backoff
with full jitter so that many clients hitting one server do not retry in lock-step.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    deadline_s: float = 120.0  # all attempts and backoffs of one request (max_retry_time_s)
    base_s: float = 0.25
    cap_s: float = 20.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): jittered exponential,
        but never less than what the server asked for."""
        backoff = min(self.cap_s, self.base_s * 2**attempt) * rng.uniform(0.5, 1.0)
        if retry_after is not None:
            return max(backoff, min(retry_after, self.max_retry_after_s))
        return backoff


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (delta seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


@dataclass
class CallStats:
    """What the backend did to get its answers; reported with the run."""

    requests: int = 0
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    waited_s: float = 0.0
    rate_limited: int = 0
    min_concurrency: int | None = None
    mc_fallback_items: int = 0
    mc_parse_failures: int = 0
    hedged: int = 0  # attempts also sent to a second endpoint (several servers only)
    hedge_wins: int = 0  # of those, answered first by the second

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "attempts": self.attempts, "retries": sum(self.retries.values()),
            "retries_by_reason": dict(sorted(self.retries.items())), "retry_wait_s": round(self.waited_s, 3),
            "rate_limited": self.rate_limited, "min_concurrency": self.min_concurrency,
            "mc_fallback_items": self.mc_fallback_items, "mc_parse_failures": self.mc_parse_failures,
            **({"hedged": self.hedged, "hedge_wins": self.hedge_wins} if self.hedged else {}),
        }


class AdaptiveLimiter:
    """How many requests one endpoint may have in flight: ``limit`` adapts between 1 and
    ``maximum``. The state only; ``EndpointPool`` (endpoints.py) waits on it."""

    def __init__(self, maximum: int, stats: CallStats) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.stats = stats
        self.active = 0
        self.resume_at = 0.0
        self._successes = 0

    def succeeded(self) -> None:
        self._successes += 1
        if self.limit < self.maximum and self._successes >= 2 * self.limit:
            self.limit += 1
            self._successes = 0

    def rate_limited(self, retry_after: float | None) -> None:
        """Multiplicative decrease, and a global pause when the server names one."""
        self.stats.rate_limited += 1
        self.limit = max(1, self.limit // 2)
        self._successes = 0
        self.stats.min_concurrency = min(self.limit, self.stats.min_concurrency or self.limit)
        if retry_after:
            self.resume_at = max(self.resume_at, time.monotonic() + retry_after)
