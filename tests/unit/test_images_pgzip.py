"""``pgzip``: a valid single-member gzip stream, identical whatever the thread count and write sizes.

Reproducible archives depend on the second property; GCE's importer (and ``gzip -t``) on the first.
"""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import pytest

from sdworker_images import proc
from sdworker_images.pgzip import BLOCK_BYTES, ParallelGzipWriter

# Compressible text and incompressible bytes across several blocks, with back-references over boundaries.
_rng = random.Random(7)
DATA = (b"stable diffusion " * 90_000) + _rng.randbytes(3 * BLOCK_BYTES + 12345) + b"tail" * 1000


def _compress(data: bytes, *, workers: int, write_size: int, level: int = 1) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, level=level, workers=workers) as writer:
        for start in range(0, len(data), write_size):
            writer.write(data[start : start + write_size])
    return out.getvalue()


def test_the_stream_decompresses_to_the_input() -> None:
    packed = _compress(DATA, workers=4, write_size=100_000)
    assert gzip.decompress(packed) == DATA
    assert len(packed) < len(DATA), "the text part compresses"


def test_the_output_depends_only_on_the_input_and_level() -> None:
    reference = _compress(DATA, workers=1, write_size=BLOCK_BYTES)
    assert _compress(DATA, workers=3, write_size=7777) == reference
    assert _compress(DATA, workers=8, write_size=len(DATA)) == reference
    assert _compress(DATA, workers=2, write_size=BLOCK_BYTES, level=6) != reference


def test_the_header_has_no_name_and_no_time() -> None:
    packed = _compress(b"x", workers=1, write_size=1)
    assert packed[:4] == b"\x1f\x8b\x08\x00", "deflate, no flags (no name, no comment)"
    assert packed[4:8] == b"\x00\x00\x00\x00", "mtime 0"


@pytest.mark.parametrize(
    "data", [b"", b"a", bytes(BLOCK_BYTES), bytes(BLOCK_BYTES + 1)], ids=["empty", "one", "block", "block+1"]
)
def test_edge_sizes(data: bytes) -> None:
    for level in (0, 1, 9):
        assert gzip.decompress(_compress(data, workers=2, write_size=4096, level=level)) == data


def test_gzip_itself_accepts_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "data.gz"
    path.write_bytes(_compress(DATA, workers=2, write_size=65536))
    proc.run(["gzip", "--test", str(path)])
    proc.run(["gzip", "--decompress", "--keep", str(path)])
    assert (tmp_path / "data").read_bytes() == DATA


def test_bad_levels_and_writes_after_close() -> None:
    with pytest.raises(ValueError, match="not 0-9"):
        ParallelGzipWriter(io.BytesIO(), level=10)
    writer = ParallelGzipWriter(io.BytesIO())
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")
