"""Retry backoff of RuntimeDisks: doubling to a cap, jittered so disks refused together do not retry together.

Regression (tests/chaos, 403 rate-limit window): ten RuntimeDisks refused by a 1 write/s cloud quota retried
in lockstep every 30 s, so one write got through per round and the scale-out crawled for minutes.
"""

from __future__ import annotations

import itertools
import random

from sdworker.provisioning import _MAX_BACKOFF, backoff


def test_backoff_doubles_up_to_the_cap_and_keeps_at_least_half() -> None:
    rng = random.Random(1)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (6, _MAX_BACKOFF), (40, _MAX_BACKOFF)]:
        delays = [backoff(attempt, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))


def test_disks_failing_together_spread_their_retries() -> None:
    rng = random.Random(2)
    # Ten disks at their tenth attempt (the cap): their next tries fall over most of a 15 s span,
    # no two within a few milliseconds of each other as a shared fixed delay would put them.
    delays = sorted(backoff(10, rng) for _ in range(10))
    assert delays[-1] - delays[0] > 5.0
    assert min(b - a for a, b in itertools.pairwise(delays)) > 0.001
