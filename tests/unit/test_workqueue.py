"""The one reconcile engine: back-off, coalescing, per-key exclusivity, concurrency, Requeue, close."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from sdworker.kube.client import _error
from sdworker.workqueue import Requeue, WorkQueue, backoff

T = TypeVar("T")
LIMIT = 10.0  # seconds a test may wait for the queue before it counts as hung


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), LIMIT))


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (0, 0.5, 30.0, 0.0),
        (1, 0.5, 30.0, 0.5),
        (2, 0.5, 30.0, 1.0),
        (3, 0.5, 30.0, 2.0),
        (7, 0.5, 30.0, 30.0),
        (1000, 0.5, 30.0, 30.0),
        (1, 5.0, 300.0, 5.0),
        (6, 5.0, 300.0, 160.0),
        (7, 5.0, 300.0, 300.0),
    ],
)
def test_backoff_doubles_from_base_up_to_the_cap(
    attempt: int, base: float, cap: float, expected: float
) -> None:
    assert backoff(attempt, base=base, cap=cap) == expected


@pytest.mark.parametrize(("attempt", "cap"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (40, 30.0)])
def test_jittered_backoff_keeps_half_fixed_and_half_random(attempt: int, cap: float) -> None:
    rng = random.Random(1)
    delays = [backoff(attempt, rng=rng) for _ in range(200)]
    assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
    assert max(delays) - min(delays) > cap / 4  # really spread, not one fixed value


def test_keys_failing_together_spread_their_retries() -> None:
    # Regression (tests/chaos, the 403 rate-limit window): ten disks refused by a 1 write/s quota retried in
    # lockstep, so one write got through per round. At the cap their next tries spread over most of 15 s.
    rng = random.Random(2)
    delays = sorted(backoff(10, rng=rng) for _ in range(10))
    assert delays[-1] - delays[0] > 5.0
    assert min(b - a for a, b in itertools.pairwise(delays)) > 0.001


def test_adds_coalesce_and_a_key_added_while_running_runs_once_more() -> None:
    async def main() -> list[str]:
        calls: list[str] = []
        started, release, twice = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def work(key: str) -> None:
            calls.append(key)
            if len(calls) == 1:
                started.set()
                await release.wait()
            else:
                twice.set()

        q: WorkQueue[str] = WorkQueue(work, name="t")
        for _ in range(3):
            q.add("a")  # three marks before it runs: one run
        runner = asyncio.create_task(q.run())
        await started.wait()
        assert q.busy() == 1
        for _ in range(3):
            q.add("a")  # three marks while it runs: one more run, after
        release.set()
        await twice.wait()
        await q.close()
        await runner
        return calls

    assert run(main) == ["a", "a"]


def test_a_key_never_runs_twice_at_once_but_different_keys_run_together() -> None:
    async def main() -> tuple[int, int, dict[str, int]]:
        active: dict[str, int] = {}
        worst_same = worst_all = 0
        done: set[str] = set()
        runs: dict[str, int] = {}
        all_in = asyncio.Event()
        finished = asyncio.Event()

        async def work(key: str) -> None:
            nonlocal worst_same, worst_all
            active[key] = active.get(key, 0) + 1
            worst_same = max(worst_same, active[key])
            worst_all = max(worst_all, sum(active.values()))
            if sum(active.values()) == 3:
                all_in.set()
            await all_in.wait()  # three keys inside at once, or the test times out
            if key not in done:
                q.add(key)  # marked again while running: runs again after, never alongside
                q.add(key)
                await asyncio.sleep(0)
            active[key] -= 1
            runs[key] = runs.get(key, 0) + 1
            done.add(key)
            if sum(runs.values()) == 6:
                finished.set()

        q: WorkQueue[str] = WorkQueue(work, name="t", concurrency=3)
        for key in "abc":
            q.add(key)
        runner = asyncio.create_task(q.run())
        await finished.wait()
        await q.close()
        await runner
        return worst_same, worst_all, runs

    worst_same, worst_all, runs = run(main)
    assert worst_same == 1
    assert worst_all == 3
    assert runs == {"a": 2, "b": 2, "c": 2}


def test_failures_back_off_report_and_are_forgotten_on_success() -> None:
    async def main() -> tuple[list[tuple[str, str, int, float]], int]:
        errors: list[tuple[str, str, int, float]] = []
        ok = asyncio.Event()
        attempts = 0

        async def work(key: str) -> None:
            nonlocal attempts
            attempts += 1
            if attempts <= 3:
                raise RuntimeError(f"boom {attempts}")
            ok.set()

        def on_error(key: str, exc: BaseException, failures: int, delay: float) -> None:
            errors.append((key, str(exc), failures, delay))
            assert q.failures(key) == failures

        q: WorkQueue[str] = WorkQueue(
            work, name="t", base_delay=0.001, max_delay=0.004, on_error=on_error, rng=random.Random(3)
        )
        q.add("k")
        runner = asyncio.create_task(q.run())
        await ok.wait()
        left = q.failures("k")
        await q.close()
        await runner
        return errors, left

    errors, left = run(main)
    assert [(k, m, n) for k, m, n, _ in errors] == [
        ("k", "boom 1", 1),
        ("k", "boom 2", 2),
        ("k", "boom 3", 3),
    ]
    caps = [0.001, 0.002, 0.004]
    assert all(cap / 2 <= d <= cap for (*_, d), cap in zip(errors, caps, strict=True))
    assert left == 0  # success forgot the failures


def test_a_servers_retry_after_is_the_floor_of_the_back_off() -> None:
    """A 429 from the API server's priority and fairness carries Retry-After: the queue waits that long."""

    async def main() -> list[float]:
        delays: list[float] = []
        done = asyncio.Event()

        async def work(key: str) -> None:
            if not delays:
                raise _error(429, b"Too many requests, please try again later.", "0.05")
            done.set()

        q: WorkQueue[str] = WorkQueue(
            work, name="t", base_delay=0.001, on_error=lambda k, e, n, d: delays.append(d)
        )
        q.add("k")
        runner = asyncio.create_task(q.run())
        await done.wait()
        await q.close()
        await runner
        return delays

    assert run(main) == [0.05]


def test_a_plain_text_error_answer_is_a_kube_error_with_its_retry_after() -> None:
    err = _error(429, b"Too many requests, please try again later.", "1")
    assert (err.status, err.reason, err.retry_after) == (429, "TooManyRequests", 1.0)
    assert err.message == "Too many requests, please try again later."
    status = b'{"kind":"Status","reason":"Conflict","message":"the object has been modified"}'
    err = _error(409, status, None)
    assert (err.status, err.reason, err.message, err.retry_after) == (
        409,
        "Conflict",
        "the object has been modified",
        None,
    )


def test_requeue_runs_again_later_without_counting_a_failure() -> None:
    async def main() -> tuple[int, int]:
        runs = 0
        second = asyncio.Event()
        errors: list[int] = []

        async def work(key: str) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise Requeue(0.01, "waiting for pods to go")
            second.set()

        q: WorkQueue[str] = WorkQueue(work, name="t", on_error=lambda k, e, n, d: errors.append(n))
        q.add("k")
        runner = asyncio.create_task(q.run())
        await second.wait()
        failures = q.failures("k")
        await q.close()
        await runner
        return failures, len(errors)

    assert run(main) == (0, 0)


def test_the_earliest_add_after_wins_and_pending_counts_waiting_keys() -> None:
    async def main() -> tuple[int, list[str]]:
        calls: list[str] = []
        ran = asyncio.Event()

        async def work(key: str) -> None:
            calls.append(key)
            ran.set()

        q: WorkQueue[str] = WorkQueue(work, name="t")
        q.add_after("k", 3600)
        q.add_after("k", 0.01)  # earlier: replaces the hour-long wait
        q.add_after("k", 1800)  # later than the one pending: ignored
        waiting = q.pending()
        runner = asyncio.create_task(q.run())
        await ran.wait()
        assert q.pending() == 0
        await q.close()
        await runner
        return waiting, calls

    assert run(main) == (1, ["k"])


def test_close_cancels_running_work_and_timers_and_leaves_no_task() -> None:
    async def main() -> tuple[bool, set[asyncio.Task[object]]]:
        cancelled = False
        started = asyncio.Event()
        before = asyncio.all_tasks()

        async def work(key: str) -> None:
            nonlocal cancelled
            started.set()
            try:
                await asyncio.Event().wait()  # forever
            except asyncio.CancelledError:
                cancelled = True
                raise

        q: WorkQueue[str] = WorkQueue(work, name="t", concurrency=4)
        q.add("busy")
        q.add_after("later", 3600)
        runner = asyncio.create_task(q.run())
        await started.wait()
        await q.close()
        await runner
        q.add("after-close")  # ignored: a closed queue runs nothing
        return cancelled, asyncio.all_tasks() - before

    cancelled, left = run(main)
    assert cancelled
    assert left == set()


def test_a_cancelled_run_stops_its_workers() -> None:
    async def main() -> set[asyncio.Task[object]]:
        started = asyncio.Event()
        before = asyncio.all_tasks()

        async def work(key: str) -> None:
            started.set()
            await asyncio.Event().wait()

        q: WorkQueue[str] = WorkQueue(work, name="t", concurrency=2)
        q.add("a")
        runner = asyncio.create_task(q.run())
        await started.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        return asyncio.all_tasks() - before

    assert run(main) == set()


def test_concurrency_must_be_positive() -> None:
    async def work(key: str) -> None:
        return None

    with pytest.raises(ValueError, match="concurrency"):
        WorkQueue(work, name="t", concurrency=0)
