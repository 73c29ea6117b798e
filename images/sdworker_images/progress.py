"""Progress lines on stderr for the long steps of a build (hashing, building the filesystem, packing).

A 10+ GB runtime takes minutes to hash and pack; a silent CLI looks hung. Lines are plain (no carriage
returns), rate-limited to one a second per step, and each step ends with its duration, so the same output
reads well in a terminal and in a CI log. The timings (wall and CPU seconds) are also kept for the build
result and the benchmark.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sdworker_content.walk import HashProgress

PREFIX = "sdworker-image"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Progress:
    """Writes progress to ``stream`` (stderr by default) unless ``quiet``; records each step's seconds."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False, interval: float = 1.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.interval = interval
        self.timings: dict[str, float] = {}
        # CPU seconds per step (this process's threads and the children it waited for): on a shared machine
        # the wall time says how busy the neighbours were; this says what the step itself cost.
        self.cpu_timings: dict[str, float] = {}
        self._last = 0.0

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"{PREFIX}: {message}", file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        """Announce a step, time it, and report its duration when it ends (also when it fails)."""
        self.note(f"{message} ...")
        start = time.monotonic()
        cpu_start = cpu_seconds()
        self._last = start
        try:
            yield
        finally:
            seconds = time.monotonic() - start
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            self.cpu_timings[name] = self.cpu_timings.get(name, 0.0) + cpu_seconds() - cpu_start
            self.note(f"{message}: {seconds:.1f}s")

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

    def every_second(self, message: Callable[[], str]) -> None:
        """Note ``message()`` if a second has passed since the last line (it is only built then)."""
        if self._due():
            self.note(message())

    def hashing(self, verb: str) -> _HashReporter:
        self._last = time.monotonic()
        return _HashReporter(self, verb)

    def still_running(self, what: str, watch: Path | None = None) -> _Heartbeat:
        return _Heartbeat(self, what, watch)


class _HashReporter:
    """Turns ``HashProgress`` callbacks into rate-limited lines: files N/M, bytes and percent."""

    def __init__(self, progress: Progress, verb: str) -> None:
        self.progress = progress
        self.verb = verb

    def __call__(self, p: HashProgress) -> None:
        done = p.files_done == p.files_total and p.bytes_done >= p.bytes_total
        if not (done or self.progress._due()):
            return
        percent = 100.0 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
        self.progress.note(
            f"{self.verb} {p.files_done}/{p.files_total} files, "
            f"{human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)} ({percent:.0f}%)"
        )


class _Heartbeat:
    """A ``proc.run`` heartbeat: says a child is still working, with elapsed time (and output size if any)."""

    def __init__(self, progress: Progress, what: str, watch: Path | None) -> None:
        self.progress = progress
        self.what = what
        self.watch = watch

    def __call__(self, elapsed: float) -> None:
        size = ""
        if self.watch is not None:
            with contextlib.suppress(OSError):
                size = f", {human_bytes(self.watch.stat().st_size)} written"
        self.progress.note(f"{self.what}: {elapsed:.0f}s{size}")
