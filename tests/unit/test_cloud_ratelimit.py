"""Write pacing: the bucket never lets more than rate*t + burst writes through; locks serialise per key."""

from __future__ import annotations

import asyncio

import pytest

from sdworker.cloud.ratelimit import KeyedLocks, TokenBucket


class FakeClock:
    """A clock that advances only when the bucket sleeps (asyncio.sleep is patched to advance it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "burst", "writes"), [(5.0, 5, 30), (20.0, 1, 50), (2.0, 3, 10)])
def test_bucket_never_exceeds_rate_plus_burst(
    monkeypatch: pytest.MonkeyPatch, rate: float, burst: int, writes: int
) -> None:
    clock = FakeClock()
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    bucket = TokenBucket(rate, burst, clock=clock)
    stamps: list[float] = []

    async def writer() -> None:
        await bucket.acquire()
        stamps.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(writer() for _ in range(writes)))

    asyncio.run(main())
    assert len(stamps) == writes
    for i, t in enumerate(sorted(stamps)):
        # Any window [0, t] admits at most burst + rate * t writes.
        assert i + 1 <= burst + rate * t + 1e-6
    assert bucket.waited_seconds > 0


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)


def test_keyed_locks_serialise_same_key_only() -> None:
    locks = KeyedLocks()
    active: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    overlap = {"ab": 0}

    async def work(keys: list[str]) -> None:
        async with locks.hold(keys):
            for k in keys:
                active[k] += 1
                peak[k] = max(peak[k], active[k])
            if active["a"] and active["b"]:
                overlap["ab"] += 1
            await asyncio.sleep(0.01)
            for k in keys:
                active[k] -= 1

    async def main() -> None:
        await asyncio.gather(work(["a"]), work(["a"]), work(["b"]), work(["b", "a"]), work(["a", "b"]))

    asyncio.run(main())
    assert peak == {"a": 1, "b": 1}
    assert overlap["ab"] >= 1  # different keys do run concurrently
