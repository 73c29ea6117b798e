"""Timed callbacks for operations: one timer thread and a small worker pool.

An operation's life is two timed steps (start RUNNING after its queue wait, finish after its
latency). Thousands can be in flight under the realistic profile, so waiting is done by one
thread over a heap rather than a sleeping thread per operation; the callbacks run in a pool
because finishing an operation may copy a file or set up a loop device. ``stop`` drops what has
not started and waits for what has, so no callback runs after the simulator is closed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, workers: int = 8) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="computesim-op")
        self._thread = threading.Thread(target=self._loop, name="computesim-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
                self._pool.submit(self._run, fn)

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        # A failing callback must not kill the pool thread silently or leak into pytest as an
        # unhandled-thread warning: log it; the engine turns errors into operation errors itself.
        try:
            fn()
        except Exception:
            log.exception("computesim: scheduled callback failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
