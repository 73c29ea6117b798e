"""``pack``: the sparse tar stream is byte for byte what GNU tar writes, and the archive is what it says.

The builder writes the oldgnu sparse tar itself (GNU tar's raw hole detection read every byte of the disk,
holes included, 512 bytes per read). GCE imports what GNU tar makes, so the reference here is GNU tar
itself: the same file through ``tar --format=oldgnu --sparse --hole-detection=raw`` with pack's fixed
owner, mode and time must give the same bytes, for files shaped to hit every case of the sparse map.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sdworker_images import pack, proc
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress

FIXED = 946684800
MIB = 1 << 20


def _gnu_tar(raw: Path) -> bytes:
    tar = proc.require("tar", "GNU tar")
    argv = [tar, "--format=oldgnu", "--sparse", "--hole-detection=raw", "--numeric-owner", "--owner=0"]
    argv += ["--group=0", "--mode=0644", f"--mtime=@{FIXED}", "-C", str(raw.parent), "-cf", "-", raw.name]
    done = subprocess.run(
        argv, capture_output=True, check=True, env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    )
    return done.stdout


def _ours(raw: Path) -> bytes:
    fd = os.open(raw, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        regions = pack.data_regions(fd, size)
        return b"".join(pack.tar_stream(fd, raw.name, size, regions, mtime=FIXED))
    finally:
        os.close(fd)


def _write_at(raw: Path, size: int, pieces: list[tuple[int, bytes]]) -> None:
    with raw.open("wb") as handle:
        handle.truncate(size)
        for offset, data in pieces:
            handle.seek(offset)
            handle.write(data)


def _random_pieces(seed: int, size: int, count: int) -> list[tuple[int, bytes]]:
    # Random data, explicit zeros (written, so the filesystem holds them as data) and data with zero runs
    # inside, at unaligned offsets: every way a 512-byte block can be zero or not.
    rng = random.Random(seed)
    pieces = []
    for _ in range(count):
        n = rng.randrange(1, 20_000)
        kind = rng.choice(["random", "zeros", "mixed"])
        data = {
            "random": rng.randbytes(n),
            "zeros": bytes(n),
            "mixed": rng.randbytes(n // 3) + bytes(n) + rng.randbytes(7),
        }[kind]
        pieces.append((rng.randrange(0, size - len(data)), data))
    return pieces


SHAPES: dict[str, Callable[[Path], None]] = {
    # 4 map entries fit the header; these need one and several extension blocks.
    "many-regions": lambda raw: _write_at(raw, 64 * MIB, _random_pieces(1, 64 * MIB, 60)),
    "few-regions": lambda raw: _write_at(raw, 8 * MIB, _random_pieces(2, 8 * MIB, 3)),
    "ends-with-data": lambda raw: _write_at(raw, 4 * MIB, [(4 * MIB - 1000, b"\x01" * 1000)]),
    "starts-with-data": lambda raw: _write_at(raw, 4 * MIB, [(0, b"\x02" * 5000)]),
    "only-zeros-written": lambda raw: _write_at(raw, 4 * MIB, [(MIB, bytes(MIB))]),
    "odd-size-zero-tail": lambda raw: _write_at(raw, 4 * MIB + 300, [(100, b"x" * 700)]),
    "odd-size-data-tail": lambda raw: _write_at(raw, 4 * MIB + 300, [(4 * MIB + 299, b"y")]),
    "exactly-21-more": lambda raw: _write_at(raw, 32 * MIB, [(i * MIB + 512, b"z" * 512) for i in range(25)]),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_tar_stream_is_what_gnu_tar_writes(tmp_path: Path, shape: str) -> None:
    raw = tmp_path / "disk.raw"
    SHAPES[shape](raw)
    ours = _ours(raw)
    assert len(ours) % pack.TAR_RECORD == 0
    assert ours == _gnu_tar(raw)


def test_the_archive_unpacks_to_the_disk_and_its_sha256_is_returned(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    SHAPES["many-regions"](raw)
    archive = tmp_path / "image.tar.gz"
    sha = pack.pack(raw, archive, fixed_time=FIXED, gzip_level=1, progress=Progress(quiet=True), workers=3)
    assert sha == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert gzip.decompress(archive.read_bytes()) == _gnu_tar(raw)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    proc.run(["tar", "-xzf", str(archive), "-C", str(unpacked)])
    assert (unpacked / "disk.raw").read_bytes() == raw.read_bytes()
    with tarfile.open(archive, "r:gz") as opened:
        (member,) = opened.getmembers()
    assert (member.name, member.mode, member.uid, member.gid, member.mtime) == (
        "disk.raw",
        0o644,
        0,
        0,
        FIXED,
    )


def test_offsets_past_8_gib_use_gnu_base_256(tmp_path: Path) -> None:
    # Real disks are 10-50 GiB: sizes and offsets there overflow the 11 octal digits of a tar field.
    raw = tmp_path / "disk.raw"
    size = 9 * (1 << 30)
    _write_at(raw, size, [(4096, b"a" * 4096), (size - 8192, b"b" * 4096)])
    fd = os.open(raw, os.O_RDONLY)
    try:
        regions = pack.data_regions(fd, size)
    finally:
        os.close(fd)
    assert regions == [(4096, 4096), (size - 8192, 4096), (size, 0)]
    archive = tmp_path / "image.tar.gz"
    pack.pack(raw, archive, fixed_time=FIXED, gzip_level=1, progress=Progress(quiet=True))
    with tarfile.open(archive, "r:gz") as opened:
        (member,) = opened.getmembers()
        assert member.size == size
        # tarfile lists the header's unused map slots (all NUL, as GNU tar leaves them) as (0, 0); typeshed
        # types ``sparse`` as a list of ints, which it is not.
        sparse: list[tuple[int, int]] = list(getattr(member, "sparse", None) or [])
        assert [entry for entry in sparse if entry != (0, 0)] == regions
        extracted = opened.extractfile(member)
        assert extracted is not None
        extracted.seek(size - 8192)
        assert extracted.read(4096) == b"b" * 4096


def test_only_disk_raw_and_real_gzip_levels(tmp_path: Path) -> None:
    other = tmp_path / "other.raw"
    other.write_bytes(b"x")
    with pytest.raises(BuildError, match=r"only a member named disk\.raw"):
        pack.pack(other, tmp_path / "a.tar.gz", fixed_time=FIXED, gzip_level=1, progress=Progress(quiet=True))
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"x")
    with pytest.raises(BuildError, match="gzip level 10"):
        pack.pack(raw, tmp_path / "a.tar.gz", fixed_time=FIXED, gzip_level=10, progress=Progress(quiet=True))
    assert not (tmp_path / "a.tar.gz").exists()
