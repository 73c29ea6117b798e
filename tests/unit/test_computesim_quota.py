"""The regional write quota: a token bucket per region, with an injected clock."""

from __future__ import annotations

import pytest

from sdworker_tools.computesim.quota import RegionalQuota, TokenBucket, region_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_then_refuses() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=20, clock=clock)
    assert all(bucket.try_take() for _ in range(20))
    assert not bucket.try_take()


def test_bucket_refills_at_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=20, clock=clock)
    for _ in range(20):
        bucket.try_take()
    clock.now += 0.1  # 2 tokens
    assert bucket.try_take()
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.now += 3600
    assert bucket.available() == pytest.approx(20)


def test_sustained_rate_over_a_minute_is_the_limit() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=20, clock=clock)
    admitted = 0
    for _ in range(60 * 100):  # 100 attempts per second for a minute
        clock.now += 0.01
        admitted += bucket.try_take()
    assert 20 * 60 <= admitted <= 20 * 60 + 20


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (5, 0.5)])
def test_bucket_rejects_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate=rate, burst=burst)


def test_regions_have_separate_buckets() -> None:
    clock = FakeClock()
    quota = RegionalQuota(rate=2, burst=2, clock=clock)
    assert quota.admit("us-central1")
    assert quota.admit("us-central1")
    assert not quota.admit("us-central1")
    assert quota.admit("europe-west4")
    assert quota.admit("global")


def test_quota_off_admits_everything_and_reconfigure_restarts_full() -> None:
    clock = FakeClock()
    quota = RegionalQuota(rate=None, clock=clock)
    assert all(quota.admit("us-central1") for _ in range(10_000))
    quota.configure(rate=1, burst=1)
    assert quota.admit("us-central1")
    assert not quota.admit("us-central1")


def test_default_burst_is_one_seconds_worth() -> None:
    clock = FakeClock()
    quota = RegionalQuota(rate=5, clock=clock)
    assert sum(quota.admit("r") for _ in range(10)) == 5


@pytest.mark.parametrize(
    ("zone", "region"),
    [
        ("us-central1-a", "us-central1"),
        ("europe-west4-b", "europe-west4"),
        ("asia-northeast1-c", "asia-northeast1"),
    ],
)
def test_region_of_zone(zone: str, region: str) -> None:
    assert region_of(zone) == region
