"""Read the files a runtime will need first (the model weights) into the page cache, in parallel.

A freshly created persistent disk is slow on first read: GCE fetches its blocks from the image lazily, and a
single reader issues one request at a time. webui's first act is to read a multi-GB checkpoint, so the agent
reads it before the node is opened to pods, with many readers at once: the files are cut into chunks and a
pool of threads ``pread``s them, which keeps many requests in flight (PD throughput scales with queue depth)
while the kernel copies into the page cache without the GIL. The same code is benchmarked against a plain
sequential read in ``bench/bench_prefetch.py``. Throughput is reported in MB/s with MB = 10^6 bytes.

Paths come from ``spec.prefetch`` and are relative to the runtime root; a path that leaves the root (``..``
or a symlink pointing out) is refused, so a RuntimeDisk cannot make the agent read host files.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

DEFAULT_WORKERS: Final = 8
DEFAULT_CHUNK_BYTES: Final = 8 * 1024 * 1024
SEQUENTIAL_BUFFER_BYTES: Final = 1024 * 1024


class PrefetchAborted(Exception):  # noqa: N818 - a control signal, not an error report
    """``should_stop`` said to stop before every chunk was read."""


@dataclass(frozen=True)
class ReadStats:
    bytes: int
    seconds: float

    @property
    def throughput_mbps(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PrefetchResult:
    files: tuple[str, ...]  # the files read, relative to the root
    skipped: tuple[str, ...]  # entries that were not read, each with the reason
    stats: ReadStats


def resolve(root: str, entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(files, skipped)``: the regular files the entries name (directories expand), and what was not."""
    real_root = os.path.realpath(root)
    files: list[str] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        if path not in seen:
            seen.add(path)
            files.append(path)

    for entry in entries:
        real = os.path.realpath(os.path.join(real_root, entry))
        if os.path.commonpath([real_root, real]) != real_root:
            skipped.append(f"{entry} (resolves outside the runtime root)")
        elif os.path.isfile(real):
            add(real)
        elif os.path.isdir(real):
            for directory, subdirs, names in os.walk(real):
                subdirs.sort()
                for name in sorted(names):
                    path = os.path.join(directory, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        add(path)
        elif os.path.lexists(real):
            skipped.append(f"{entry} (not a regular file or directory)")
        else:
            skipped.append(f"{entry} (not found)")
    return files, skipped


def prefetch(
    root: str,
    entries: Sequence[str],
    *,
    workers: int = DEFAULT_WORKERS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    should_stop: Callable[[], bool] = lambda: False,
) -> PrefetchResult:
    files, skipped = resolve(root, entries)
    stats = read_parallel(files, workers=workers, chunk_bytes=chunk_bytes, should_stop=should_stop)
    real_root = os.path.realpath(root)
    return PrefetchResult(
        files=tuple(os.path.relpath(f, real_root) for f in files), skipped=tuple(skipped), stats=stats
    )


def read_parallel(
    paths: Sequence[str],
    *,
    workers: int = DEFAULT_WORKERS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReadStats:
    """Read every byte of ``paths`` with ``workers`` threads pulling ``chunk_bytes`` chunks in file order.

    Each thread opens the files itself: readahead state lives in the open file, and one descriptor shared
    by threads reading at scattered offsets looks like random access to the kernel, which then reads small.
    """
    if workers < 1 or chunk_bytes < 1:
        raise ValueError("workers and chunk_bytes must be positive")
    started = time.monotonic()
    chunks: list[tuple[str, int, int]] = []
    for path in paths:
        size = os.stat(path).st_size
        chunks += [(path, offset, min(chunk_bytes, size - offset)) for offset in range(0, size, chunk_bytes)]
    threads = min(workers, max(1, len(chunks)))
    pending = _Shared(iter(chunks))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prefetch") as pool:
        futures = [pool.submit(_reader, pending, chunk_bytes, should_stop) for _ in range(threads)]
        total = sum(f.result() for f in futures)
    return ReadStats(bytes=total, seconds=time.monotonic() - started)


def read_sequential(path: str, *, buffer_bytes: int = SEQUENTIAL_BUFFER_BYTES) -> ReadStats:
    """One thread, one ``read`` after another: what ``cat file > /dev/null`` does (the baseline)."""
    started = time.monotonic()
    total = 0
    buf = bytearray(buffer_bytes)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return ReadStats(bytes=total, seconds=time.monotonic() - started)


def evict(path: str) -> None:
    """Drop one file's clean pages from the page cache (``posix_fadvise(DONTNEED)``), for measurements."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class _Shared:
    """An iterator many threads may pull from."""

    def __init__(self, items: Iterator[tuple[str, int, int]]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def next(self) -> tuple[str, int, int] | None:
        with self._lock:
            return next(self._items, None)


def _reader(pending: _Shared, chunk_bytes: int, should_stop: Callable[[], bool]) -> int:
    view = memoryview(bytearray(chunk_bytes))
    fds: dict[str, int] = {}
    total = 0
    try:
        while (chunk := pending.next()) is not None:
            if should_stop():
                raise PrefetchAborted("prefetch stopped before it finished")
            path, offset, length = chunk
            fd = fds.get(path)
            if fd is None:
                fd = fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            done = 0
            while done < length:
                n = os.preadv(fd, [view[: length - done]], offset + done)
                if n == 0:  # the file shrank under us: a read-only runtime never does, but do not spin
                    break
                done += n
            total += done
    finally:
        for fd in fds.values():
            os.close(fd)
    return total
