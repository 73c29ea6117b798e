"""Packs ``disk.raw`` into the ``tar.gz`` that GCE imports (``images.insert`` with ``rawDisk.source``).

GCE wants one member named ``disk.raw``, GNU ``oldgnu`` format, gzip-compressed, and accepts sparse members,
which keeps a mostly-empty 20 GB disk small. The tar stream is written here, byte for byte what
``tar --format=oldgnu --sparse --hole-detection=raw --numeric-owner --owner=0 --group=0 --mode=0644
--mtime=@T -cf - disk.raw`` writes (a unit test compares the two), and ``pgzip`` compresses it on every
core. Writing it here rather than piping GNU tar saves what made packing slow: tar's raw hole detection
reads the whole apparent size 512 bytes per ``read`` (holes included), then reads the data again, and the
stream crossed a pipe. Here holes the filesystem reports (``SEEK_HOLE``) are skipped, the data extents are
scanned for all-zero 512-byte blocks with a C-speed search, and the archive's sha256 is taken as it is
written. The result is the same whatever the builder's filesystem: a hole is any all-zero 512-byte block,
found by reading, as with ``--hole-detection=raw``. Header as ``gzip -n`` writes it: no name, no time.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from sdworker_images.errors import BuildError
from sdworker_images.pgzip import BLOCK_BYTES, ParallelGzipWriter
from sdworker_images.progress import Progress, human_bytes

RAW_NAME: Final = "disk.raw"
DEFAULT_GZIP_LEVEL: Final = 1
TAR_BLOCK: Final = 512
# GNU tar's default record: 20 blocks; the archive is padded to a whole record.
TAR_RECORD: Final = 20 * TAR_BLOCK
SPARSES_IN_HEADER: Final = 4
SPARSES_IN_EXTENSION: Final = 21
_READ: Final = 4 * BLOCK_BYTES
_ZERO_BLOCK: Final = bytes(TAR_BLOCK)

Region = tuple[int, int]  # (offset, length) of data kept in the archive


def pack(
    raw: Path,
    archive: Path,
    *,
    fixed_time: int,
    gzip_level: int,
    progress: Progress,
    workers: int | None = None,
) -> str:
    """Write ``archive`` holding ``raw`` (which must be named ``disk.raw``); returns the archive's sha256."""
    if raw.name != RAW_NAME:
        raise BuildError(f"GCE imports only a member named {RAW_NAME}, not {raw.name}")
    if not 0 <= gzip_level <= 9:
        raise BuildError(f"gzip level {gzip_level} is not 0 (store) to 9")
    archive.unlink(missing_ok=True)
    fd = os.open(raw, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        regions = data_regions(fd, size)
        expected = sum(length for _, length in regions)
        done = 0
        with (
            archive.open("xb") as out,
            _HashingWriter(out) as hashed,
            ParallelGzipWriter(hashed, level=gzip_level, workers=workers or os.cpu_count() or 1) as gz,
        ):
            for chunk in tar_stream(fd, RAW_NAME, size, regions, mtime=fixed_time):
                gz.write(chunk)
                done += len(chunk)
                progress.every_second(functools.partial(_packed, done, expected, out))
        return hashed.hexdigest()
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _packed(done: int, expected: int, out: BinaryIO) -> str:
    return f"packed {human_bytes(done)} of {human_bytes(expected)}, {human_bytes(out.tell())} compressed"


class _HashingWriter:
    """Passes writes to ``out`` and hashes them, so the archive need not be read back for its sha256."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._sha = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._sha.update(data)
        return self._out.write(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def __enter__(self) -> _HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.flush()


# --- the sparse map: GNU tar's --hole-detection=raw, without reading the holes ---


def data_regions(fd: int, size: int) -> list[Region]:
    """The sparse map of the file open on ``fd``: maximal runs of 512-byte blocks that are not all zero,
    plus, if the file ends in a hole, an empty region at its end (GNU tar marks the size that way).
    """
    regions: list[Region] = []
    start = end = -1
    for offset, length in _extents(fd, size):
        for run_start, run_length in _nonzero_runs(fd, offset, length):
            if run_start == end:
                end += run_length
                continue
            if end >= 0:
                regions.append((start, end - start))
            start, end = run_start, run_start + run_length
    if end >= 0:
        regions.append((start, end - start))
    if end != size:
        regions.append((size, 0))
    return regions


def _extents(fd: int, size: int) -> Iterator[Region]:
    """Where the filesystem says there may be data, in 512-byte-aligned spans; all of it if it cannot say."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield offset, size - offset
                return
            raise
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        start = data - data % TAR_BLOCK
        stop = min(size, -(-hole // TAR_BLOCK) * TAR_BLOCK)
        yield start, stop - start
        offset = stop


def _nonzero_runs(fd: int, offset: int, length: int) -> Iterator[Region]:
    """Runs of not-all-zero 512-byte blocks within ``[offset, offset + length)`` (offset block-aligned)."""
    position, stop = offset, offset + length
    while position < stop:
        chunk = os.pread(fd, min(_READ, stop - position), position)
        if not chunk:
            raise BuildError(f"{RAW_NAME} shrank while it was being packed")
        yield from _runs_in(chunk, position)
        position += len(chunk)


def _runs_in(chunk: bytes, base: int) -> Iterator[Region]:
    n = len(chunk)
    data_from = 0
    search = 0
    while True:
        hit = chunk.find(_ZERO_BLOCK, search)
        if hit < 0:
            break
        aligned = -(-hit // TAR_BLOCK) * TAR_BLOCK
        if aligned + TAR_BLOCK > n or chunk[aligned : aligned + TAR_BLOCK] != _ZERO_BLOCK:
            search = aligned + 1
            continue
        zero_end = aligned + TAR_BLOCK
        while zero_end + TAR_BLOCK <= n and chunk[zero_end : zero_end + TAR_BLOCK] == _ZERO_BLOCK:
            zero_end += TAR_BLOCK
        if aligned > data_from:
            yield base + data_from, aligned - data_from
        data_from = search = zero_end
    if n % TAR_BLOCK and data_from < n:
        # A short last block (a file not a multiple of 512 bytes) is a hole if what there is of it is zero.
        last = n - n % TAR_BLOCK
        if data_from <= last and chunk[last:] == bytes(n - last):
            if last > data_from:
                yield base + data_from, last - data_from
            return
    if data_from < n:
        yield base + data_from, n - data_from


# --- the tar stream ---


def _number(value: int, width: int) -> bytes:
    """A numeric header field as GNU tar writes it: octal digits and a NUL, or base-256 when too big."""
    if value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    if value >= 256 ** (width - 1):
        raise BuildError(f"{value} does not fit a {width}-byte tar field")
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _sparse_entries(regions: list[Region]) -> bytes:
    return b"".join(_number(offset, 12) + _number(length, 12) for offset, length in regions)


def tar_header(name: str, size: int, regions: list[Region], *, mtime: int) -> bytes:
    """The oldgnu sparse header (type ``S``) and its extension blocks for a file of ``size`` bytes."""
    encoded = name.encode()
    if len(encoded) >= 100:
        raise BuildError(f"{name}: name too long for a plain tar header")
    stored = sum(length for _, length in regions)
    header = bytearray(TAR_BLOCK)
    header[0 : len(encoded)] = encoded
    header[100:108] = _number(0o644, 8)
    header[108:116] = _number(0, 8)
    header[116:124] = _number(0, 8)
    header[124:136] = _number(stored, 12)
    header[136:148] = _number(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = b"S"
    header[257:265] = b"ustar  \0"
    first, rest = regions[:SPARSES_IN_HEADER], regions[SPARSES_IN_HEADER:]
    entries = _sparse_entries(first)
    header[386 : 386 + len(entries)] = entries
    header[482] = 1 if rest else 0
    header[483:495] = _number(size, 12)
    header[148:155] = b"%06o\0" % sum(header)
    blocks = [bytes(header)]
    while rest:
        part, rest = rest[:SPARSES_IN_EXTENSION], rest[SPARSES_IN_EXTENSION:]
        extension = bytearray(TAR_BLOCK)
        entries = _sparse_entries(part)
        extension[0 : len(entries)] = entries
        extension[504] = 1 if rest else 0
        blocks.append(bytes(extension))
    return b"".join(blocks)


def tar_stream(fd: int, name: str, size: int, regions: list[Region], *, mtime: int) -> Iterator[bytes]:
    """The whole archive: header, each region's bytes padded to 512, two zero blocks, padded to a record."""
    header = tar_header(name, size, regions, mtime=mtime)
    yield header
    written = len(header)
    for offset, length in regions:
        position, stop = offset, offset + length
        while position < stop:
            chunk = os.pread(fd, min(_READ, stop - position), position)
            if not chunk:
                raise BuildError(f"{name} shrank while it was being packed")
            yield chunk
            position += len(chunk)
            written += len(chunk)
        if length % TAR_BLOCK:
            pad = TAR_BLOCK - length % TAR_BLOCK
            yield bytes(pad)
            written += pad
    trailer = 2 * TAR_BLOCK
    trailer += -(written + trailer) % TAR_RECORD
    yield bytes(trailer)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
