"""The one walker of a runtime tree, and file hashing with progress: shared by the builder and the verifier.

``walk`` lists a tree the way the content index sees it (sorted, symlinks never followed, the reserved root
names skipped, every other file type reported rather than skipped): the image builder walks its input with
it and the agent walks a mounted disk with it. ``sha256_fd`` is the one hashing loop and ``HashCounter``
the one progress count (thread-safe: the builder hashes on a thread pool).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from sdworker_content.index import RESERVED_ROOT_NAMES, Entry

_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Found:
    """A path found by ``walk``: its type as seen without following symlinks, and what the index needs."""

    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    executable: bool
    target: str
    mtime: int = 0


def walk(root: Path) -> Iterator[Found]:
    """Every path under ``root`` in sorted order, symlinks not followed, the reserved root names skipped.

    Lazy: a directory is yielded before what it holds, so a caller that stops at a bad path reads no more.
    """
    yield from _walk(root, "")


def _walk(directory: Path, prefix: str) -> Iterator[Found]:
    with os.scandir(directory) as scan:
        children = sorted(scan, key=lambda e: e.name)
    for child in children:
        if not prefix and child.name in RESERVED_ROOT_NAMES:
            continue
        rel = f"{prefix}{child.name}"
        st = child.stat(follow_symlinks=False)
        if child.is_symlink():
            yield Found(rel, "symlink", 0, False, os.readlink(child.path))
        elif child.is_dir(follow_symlinks=False):
            yield Found(rel, "dir", 0, False, "")
            yield from _walk(Path(child.path), rel + "/")
        elif child.is_file(follow_symlinks=False):
            yield Found(rel, "file", st.st_size, bool(st.st_mode & 0o111), "", int(st.st_mtime))
        else:
            yield Found(rel, "other", 0, False, "")


# --- hashing ---


@dataclass(frozen=True)
class HashProgress:
    """Reported while hashing: counts so far and in total, and the file being read."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    path: str


ProgressFn = Callable[[HashProgress], None]


class HashCounter:
    """Files and bytes hashed so far, against totals known up front; reports each step to ``progress``.

    Thread-safe: the builder's hashing threads share one.
    """

    def __init__(self, files_total: int, bytes_total: int, progress: ProgressFn | None) -> None:
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.files_done = 0
        self.bytes_done = 0
        self.progress = progress
        self._lock = threading.Lock()

    def add(self, path: str, n: int, file_done: bool = False) -> None:
        with self._lock:
            self.bytes_done += n
            self.files_done += int(file_done)
            if self.progress:
                self.progress(
                    HashProgress(self.files_done, self.files_total, self.bytes_done, self.bytes_total, path)
                )


def sha256_fd(fd: int, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """The hex sha256 of the rest of an open file and how many bytes that was, read in 1 MiB chunks;
    ``on_bytes`` is told each chunk's size."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while n := os.readv(fd, [view]):
        digest.update(view[:n])
        size += n
        if on_bytes:
            on_bytes(n)
    return digest.hexdigest(), size


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The hex sha256 of a regular file (see ``sha256_fd``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sha256_fd(fd, on_bytes)[0]
    finally:
        os.close(fd)


def hash_tree_file(root: Path, rel: str, counter: HashCounter) -> str:
    """The hex sha256 of ``root/rel``, counted in ``counter`` (bytes as read, then the file)."""
    digest = sha256_file(root / rel, lambda n: counter.add(rel, n))
    counter.add(rel, 0, file_done=True)
    return digest


def scan(root: Path, progress: ProgressFn | None = None) -> tuple[Entry, ...]:
    """The index entries of the tree at ``root``, hashing every file; other file types raise ValueError."""
    found = list(walk(root))
    others = [f.path for f in found if f.type == "other"]
    if others:
        raise ValueError(f"{others[0]}: not a regular file, directory or symlink")
    files = [f for f in found if f.type == "file"]
    counter = HashCounter(len(files), sum(f.size for f in files), progress)
    entries = []
    for item in found:
        if item.type == "file":
            digest = hash_tree_file(root, item.path, counter)
            entries.append(Entry(item.path, "file", item.size, digest, item.executable))
        elif item.type == "symlink":
            entries.append(Entry(item.path, "symlink", target=item.target))
        else:
            entries.append(Entry(item.path, "dir"))
    return tuple(entries)
