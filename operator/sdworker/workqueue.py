"""The one reconcile engine: a keyed work queue with per-key back-off, used by the operator and the agent.

Why our own queue and not kopf's ``TemporaryError(delay)``: kopf retries one handler invocation of one
object, but our reconciles are level-triggered over several watched kinds at once (a placement pass reads
every Node, SDWorker, RuntimeDisk and NodeClaim; a RuntimeDisk's cloud work outlives any one event), and
the node agent does not run kopf at all. So kopf handlers stay thin and only *mark keys* here; the queue
decides when and how often a key's work runs. It is the shape of client-go's rate-limited workqueue:

- ``add`` marks a key dirty; marks coalesce, a key never runs twice at once, and a key added while its
  work runs is run once more afterwards (level-triggered work then sees the newest state);
- work that raises is retried after ``backoff(failures)`` (doubling from ``base_delay`` to ``max_delay``,
  jittered so keys refused together do not retry in step), never sooner than an error's ``retry_after``
  (the server's Retry-After, e.g. a 429 from the API server's priority and fairness); success forgets the
  count;
- work that raises ``Requeue(delay)`` asks to look again later without counting as a failure;
- ``concurrency`` workers run different keys at the same time; ``close`` cancels workers and timers;
- with a ``gate``, every worker awaits it before running a key's work (the operator's leadership gate,
  ``sdworker.leadership``: a standby replica's keys wait, still queued, until it is the active one).

Pure asyncio and the standard library (import-linter: no kopf, kubernetes, cloud or kube), so the agent
can import it. ``backoff`` here is the only copy of the back-off formula in the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("sdworker.workqueue")
K = TypeVar("K", bound=Hashable)
_JITTER = random.Random()


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): ``base`` doubling up to ``cap``.

    With ``rng`` the delay is jittered: half of it fixed, half random, so work refused together (a burst over
    the cloud's write quota) does not retry together, forever in step (found by tests/chaos, the 403
    rate-limit window: ten disks retried in lockstep and one write got through per round).
    """
    if attempt < 1:
        return 0.0
    delay = min(cap, base * 2.0 ** min(attempt - 1, 62))
    if rng is None:
        return delay
    return delay / 2 + rng.uniform(0, delay / 2)


class Requeue(Exception):  # noqa: N818 - a control signal, not an error report
    """Raised by work: run this key again after ``delay`` seconds. Not a failure: no back-off growth."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(f"requeue in {delay:.1f}s" + (f": {reason}" if reason else ""))
        self.delay = delay
        self.reason = reason


class WorkQueue(Generic[K]):
    """Keys to reconcile: each by ``work`` one at a time, different keys by up to ``concurrency`` workers."""

    def __init__(
        self,
        work: Callable[[K], Awaitable[None]],
        *,
        name: str,
        concurrency: int = 1,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        on_error: Callable[[K, BaseException, int, float], None] | None = None,
        rng: random.Random | None = None,
        gate: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"{name}: concurrency must be at least 1, not {concurrency}")
        self.name = name
        self._work = work
        self._concurrency = concurrency
        self._retry_delay = functools.partial(
            backoff, base=base_delay, cap=max_delay, rng=rng if rng is not None else _JITTER
        )
        self._on_error = on_error
        self._gate = gate
        # Keys to run now, in order; ``_queued`` holds the same keys, so each is in here once.
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._running: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    # --- marking -------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Run ``key``'s work soon; a no-op if it is already waiting, once more after if it is running."""
        if self._closed:
            return
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)  # wakes one idle worker, not all of them

    def add_after(self, key: K, delay: float) -> None:
        """Run ``key``'s work in ``delay`` seconds (the earliest of several such requests wins)."""
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: K) -> None:
        """Reset ``key``'s failure count (its next failure waits ``base_delay`` again)."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def pending(self) -> int:
        """Keys waiting to run now or after a delay (not counting those running)."""
        return len(self._queued | self._again | set(self._timers))

    def busy(self) -> int:
        """Keys whose work is running now."""
        return len(self._running)

    def closed(self) -> bool:
        return self._closed

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the workers until cancelled or closed."""
        if self.closed():
            return
        self._workers = [
            asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
            for i in range(self._concurrency)
        ]
        try:
            await asyncio.gather(*self._workers)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not self.closed() or (me is not None and me.cancelling()):
                raise  # cancelled from outside; after close() the run simply ends
        finally:
            await self._stop_workers()

    async def close(self) -> None:
        """Stop: cancel the workers (and the work they run) and the timers; leaves no task behind."""
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self._stop_workers()

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _next(self) -> K:
        key = await self._ready.get()
        self._queued.discard(key)
        return key

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._running.add(key)
            try:
                if self._gate is not None:
                    await self._gate()  # adds meanwhile coalesce into one more run afterwards
                await self._run_one(key)
            finally:
                self._running.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)

    async def _run_one(self, key: K) -> None:
        try:
            await self._work(key)
        except Requeue as again:
            self.forget(key)
            self.add_after(key, again.delay)
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            # An error may carry the server's Retry-After (``KubeError.retry_after``): never retry sooner.
            delay = max(self._retry_delay(failures), getattr(exc, "retry_after", None) or 0.0)
            self.add_after(key, delay)
            if self._on_error is None:
                log.warning(
                    "%s: %r failed (attempt %d, retry in %.1fs): %s", self.name, key, failures, delay, exc
                )
                return
            try:
                self._on_error(key, exc, failures, delay)
            except Exception:
                log.exception("%s: on_error failed for %r", self.name, key)
        else:
            self.forget(key)
