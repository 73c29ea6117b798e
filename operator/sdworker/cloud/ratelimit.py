"""Keeping every cloud write under the project's regional write quota, and one operation per resource.

GCE answers bursts above the per-region write quota with 403 ``rateLimitExceeded`` and concurrent
operations on one resource with "Too many pending operations". A shared token bucket paces all
writes below the quota (its burst is the only overshoot allowed), and keyed locks serialise the
operations on each disk and each instance. Waiting time is reported so it can be exported as a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take one token; return how long we waited for it."""
        started = self._clock()
        async with self._lock:  # FIFO: waiters are served in order, nobody starves
            self._refill()
            # The epsilon: rounding can leave 0.9999999 tokens, and a sleep shorter than the
            # clock's resolution would never add the rest.
            while self._tokens < 1 - 1e-9:
                await asyncio.sleep(max((1 - self._tokens) / self.rate, 1e-3))
                self._refill()
            self._tokens = max(0.0, self._tokens - 1)
        waited = self._clock() - started
        self.waited_seconds += waited
        return waited


class KeyedLocks:
    """One asyncio lock per key (a disk or an instance), acquired in sorted order to avoid deadlock."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
            yield
