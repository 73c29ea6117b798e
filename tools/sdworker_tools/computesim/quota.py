"""Rate quotas: a token bucket per (kind, region), as GCE meters writes per project and region.

GCE counts write requests (``disks.insert``, ``instances.attachDisk``, ...) per region and
answers 403 ``rateLimitExceeded`` beyond the limit (research/peers.md §8: ~20 requests/s is the
figure users quote). The real meter refills per minute; a token bucket with ``burst`` tokens and
``rate`` tokens/s is the smooth equivalent and is what the operator's own limiter models, so a
test can show the operator staying under the limit. Pure: the clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; starts full."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got {self.rate}/{self.burst}")
        self._tokens = self.burst
        self._stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if available now; never blocks."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def available(self) -> float:
        self._refill()
        return self._tokens


class RegionalQuota:
    """One bucket per scope (a region such as ``us-central1``, or ``global``); thread-safe.

    ``rate=None`` switches the quota off (every request admitted).
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self.rate = rate
        self.burst = burst

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        """Change the limit; buckets restart full."""
        with self._lock:
            self.rate = rate
            self.burst = burst
            self._buckets.clear()

    def admit(self, scope: str) -> bool:
        with self._lock:
            if self.rate is None:
                return True
            bucket = self._buckets.get(scope)
            if bucket is None:
                burst = self.burst if self.burst is not None else max(1.0, self.rate)
                bucket = self._buckets[scope] = TokenBucket(self.rate, burst, self._clock)
            return bucket.try_take()


def region_of(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0]
