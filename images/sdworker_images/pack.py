"""Packs ``disk.raw`` into the ``tar.gz`` that GCE imports (``images.insert`` with ``rawDisk.source``).

GCE wants one member named ``disk.raw``, GNU ``oldgnu`` format, gzip-compressed, and accepts sparse members,
which keeps a mostly-empty 20 GB disk small. GNU tar writes the tar stream (Python's tarfile cannot write
sparse members); ``pgzip`` compresses it on every core. The archive is reproducible: fixed owner, mode and
mtime, holes found by reading the bytes (``--hole-detection=raw``, so the result does not depend on how the
builder's filesystem happened to allocate the file) and a gzip header without name or time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

from sdworker_images import proc
from sdworker_images.errors import BuildError
from sdworker_images.pgzip import ParallelGzipWriter
from sdworker_images.progress import Progress, human_bytes

RAW_NAME: Final = "disk.raw"
DEFAULT_GZIP_LEVEL: Final = 1


def pack(
    raw: Path,
    archive: Path,
    *,
    fixed_time: int,
    gzip_level: int,
    progress: Progress,
    workers: int | None = None,
) -> None:
    """Write ``archive`` holding ``raw`` (which must be named ``disk.raw``)."""
    if raw.name != RAW_NAME:
        raise BuildError(f"GCE imports only a member named {RAW_NAME}, not {raw.name}")
    if not 0 <= gzip_level <= 9:
        raise BuildError(f"gzip level {gzip_level} is not 0 (store) to 9")
    tar = proc.require("tar", "GNU tar")
    argv = [
        tar,
        "--format=oldgnu",
        "--sparse",
        "--hole-detection=raw",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--mode=0644",
        f"--mtime=@{fixed_time}",
        "-C",
        str(raw.parent),
        "-cf",
        "-",
        RAW_NAME,
    ]
    # Roughly what tar will emit: the data blocks (holes are not stored) and some headers.
    expected = raw.stat().st_blocks * 512
    done = 0
    archive.unlink(missing_ok=True)
    try:
        with (
            archive.open("xb") as out,
            ParallelGzipWriter(out, level=gzip_level, workers=workers or os.cpu_count() or 1) as gz,
        ):

            def sink(chunk: bytes) -> None:
                nonlocal done
                gz.write(chunk)
                done += len(chunk)
                progress.every_second(
                    lambda: (
                        f"packed {human_bytes(done)} of about {human_bytes(expected)}, "
                        f"{human_bytes(out.tell())} compressed"
                    )
                )

            proc.stream(argv, sink, env={"LC_ALL": "C", "TZ": "UTC"})
    except BaseException:
        archive.unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
