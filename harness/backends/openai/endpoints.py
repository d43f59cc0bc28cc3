"""Many servers behind one ``openai:`` model: which endpoint takes the next request, and which
ones are down.

Why here and not a load balancer: a user with N vLLM/SGLang/TGI replicas should not need one,
and a balancer cannot know what harness knows: that a request which failed on one replica may be
sent again to another (every request here is idempotent: greedy or seeded, no side effects).

- Each endpoint has its own adaptive limiter (``--concurrency`` requests in flight *per
  endpoint*, halved on its 429s), so a fleet of N servers runs N times as many requests.
- The next request goes to the endpoint with the most free room (in-flight / limit), ties to
  the one that has served fewer, so load spreads evenly and a slow endpoint, whose slots stay
  busy longer, gets fewer requests without being told.
- Health: with more than one endpoint, a connection error or a timeout (a killed or hung
  server), or three failures in a row of any kind, marks the endpoint down for a backoff that
  doubles on each further failure (1 s, 2 s, ... 30 s). A down endpoint takes no request until
  its backoff has passed; then one probe request at a time until one succeeds. When every
  endpoint is down, the pool acts as one server does (each retry waits its own backoff), so a
  fleet that is gone fails within the retry budget instead of waiting out the backoffs. Its failed
  requests are retried at once on the others, so a dead server costs the run one failed
  attempt per request it held, and a hung one at most ``timeout_s``.
- Hedging: an attempt still running after 3x the median latency (at least 1 s) is sent again to
  an endpoint with a slot that no queued request is waiting for; the first answer wins, the
  other is cancelled. So a slow server's requests move to idle ones at the end of each chunk,
  and no extra load lands where there is a queue.
- With one endpoint nothing is ever marked down: there is nowhere else to go, and each failed
  request waits its own jittered backoff (``RetryPolicy``), as before.

Which endpoint answered is never part of a result: replicas are expected to serve the same
model, and a run over two servers stores what a run over one stores (tested with two real vLLM
servers, one killed mid-run).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from harness.backends.openai.ratelimit import AdaptiveLimiter, CallStats

# failures that say "this server", not "this request": a dead or hung process
SERVER_FAULTS = frozenset({"connection", "timeout"})


@dataclass(frozen=True)
class HealthPolicy:
    first_down_s: float = 1.0
    max_down_s: float = 30.0
    failures_to_mark_down: int = 3  # of any kind, in a row
    hedge_floor_s: float = 1.0

    def down_for(self, times_marked: int) -> float:
        return min(self.max_down_s, self.first_down_s * 2 ** max(0, times_marked - 1))


@dataclass
class Endpoint:
    """One server: its URL (no credentials), its limiter, its client, its health."""

    url: str
    limiter: AdaptiveLimiter
    client: Any = None
    failures_in_a_row: int = 0
    times_marked: int = 0  # consecutive markings, reset by a success: the backoff exponent
    down_until: float = 0.0
    served: int = 0
    failed: int = 0
    marked_down: int = 0

    def is_down(self, now: float) -> bool:
        return now < self.down_until

    def probing(self) -> bool:
        """Marked down before and not yet answered since: one request at a time."""
        return self.times_marked > 0

    def room(self, now: float, *, health: bool = True) -> float:
        """Free share of its slots (higher is freer); <= 0 when it takes nothing now. Without
        ``health`` its being down is ignored (when every endpoint is)."""
        if (health and self.is_down(now)) or now < self.limiter.resume_at:
            return 0.0
        limit = 1 if health and self.probing() else self.limiter.limit
        return (limit - self.limiter.active) / limit


class EndpointPool:
    """Hands out endpoints to requests; created outside the event loop, ``bind`` inside it."""

    def __init__(self, urls: list[str], concurrency: int, stats: CallStats, health: HealthPolicy | None = None) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.endpoints = [Endpoint(url, AdaptiveLimiter(concurrency, stats)) for url in urls]
        self.health = health or HealthPolicy()
        self.waiting = 0  # requests blocked in acquire: a hedge never takes a slot one of them could use
        self.latencies: deque[float] = deque(maxlen=64)  # of recent successes, for the hedge delay
        self._cond: asyncio.Condition | None = None

    @property
    def many(self) -> bool:
        return len(self.endpoints) > 1

    def bind(self) -> None:
        self._cond = asyncio.Condition()
        for endpoint in self.endpoints:
            endpoint.limiter.active = 0

    async def acquire(self, avoid: Endpoint | None = None) -> Endpoint:
        """The endpoint with the most room; waits while none has any. ``avoid`` (where the request
        just failed) is taken only when no other endpoint has room."""
        assert self._cond is not None, "bind() first, inside the event loop"
        async with self._cond:
            self.waiting += 1
            try:
                return await self._wait_for_room(avoid)
            finally:
                self.waiting -= 1

    async def _wait_for_room(self, avoid: Endpoint | None) -> Endpoint:
        assert self._cond is not None
        while True:
            now = time.monotonic()
            # every endpoint down: waiting for one to come back could take minutes, so behave as one
            # server does: requests go on, each retry after its own backoff, until one gives up
            health = not all(e.is_down(now) for e in self.endpoints)
            free = [e for e in self.endpoints if e.room(now, health=health) > 0]
            if avoid is not None and len(free) > 1:
                free = [e for e in free if e is not avoid]
            if free:
                chosen = max(free, key=lambda e: (e.room(now, health=health), -e.served - e.limiter.active))
                chosen.limiter.active += 1
                return chosen
            try:  # woken by a release; or when the first pause or down period ends
                await asyncio.wait_for(self._cond.wait(), timeout=self._next_change(now))
            except asyncio.TimeoutError:
                pass

    def try_acquire(self, avoid: Endpoint) -> Endpoint | None:
        """A slot for a hedge: on another endpoint that is up and has room no queued request is
        waiting for; else None. Never waits."""
        if self.waiting:
            return None
        now = time.monotonic()
        free = [e for e in self.endpoints if e is not avoid and e.room(now) > 0]
        if not free:
            return None
        chosen = max(free, key=lambda e: e.room(now))
        chosen.limiter.active += 1
        return chosen

    def hedge_delay(self) -> float:
        """How long an attempt runs before a hedge may be sent: 3x the median recent latency, at
        least ``hedge_floor_s`` (so ordinary requests are not doubled)."""
        if not self.latencies:
            return self.health.hedge_floor_s
        ordered = sorted(self.latencies)
        return max(self.health.hedge_floor_s, 3 * ordered[len(ordered) // 2])

    def _next_change(self, now: float) -> float | None:
        waits = [t - now for e in self.endpoints for t in (e.down_until, e.limiter.resume_at) if t > now]
        return max(0.01, min(waits)) if waits else None

    async def release(self, endpoint: Endpoint) -> None:
        assert self._cond is not None
        async with self._cond:
            endpoint.limiter.active -= 1
            self._cond.notify_all()

    def succeeded(self, endpoint: Endpoint, latency_s: float = 0.0) -> None:
        self.latencies.append(latency_s)
        endpoint.served += 1
        endpoint.failures_in_a_row = 0
        endpoint.times_marked = 0
        endpoint.limiter.succeeded()

    def failed(self, endpoint: Endpoint, reason: str) -> None:
        """Count a failed attempt; with several endpoints, mark this one down when it looks dead."""
        endpoint.failed += 1
        endpoint.failures_in_a_row += 1
        if not self.many:
            return
        if reason in SERVER_FAULTS or endpoint.failures_in_a_row >= self.health.failures_to_mark_down or endpoint.probing():
            endpoint.times_marked += 1
            endpoint.marked_down += 1
            endpoint.failures_in_a_row = 0
            endpoint.down_until = time.monotonic() + self.health.down_for(endpoint.times_marked)

    def others_up(self, endpoint: Endpoint) -> bool:
        """Whether a retry can go elsewhere now (then it need not wait its backoff)."""
        now = time.monotonic()
        return any(e is not endpoint and not e.is_down(now) for e in self.endpoints)

    def report(self, mask: Any) -> list[dict[str, Any]]:
        """Per-endpoint counts for the run's backend stats (URLs through ``mask``)."""
        return [{"url": mask(e.url), "served": e.served, "failed": e.failed, "marked_down": e.marked_down} for e in self.endpoints]
