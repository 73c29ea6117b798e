"""Keeps timestamp-based ``.pyc`` files valid when the builder sets every file time to one fixed value.

Python trusts ``__pycache__/mod.cpython-310.pyc`` only while the mtime and size recorded in its header equal
those of ``mod.py``. A reproducible image needs fixed mtimes, which would silently invalidate every such pyc;
on a read-only disk Python cannot rewrite them, so every pod would recompile torch's thousands of modules in
memory at every start. The builder therefore rewrites the recorded mtime of each pyc that was valid for its
source to the fixed time. A pyc that was already stale is left as it was: it stays stale, never becomes
falsely valid. Hash-based pycs (``--invalidation-mode unchecked-hash``, what spec builds produce) do not
depend on mtimes and are left alone.
"""

from __future__ import annotations

from typing import Final

HEADER_SIZE: Final = 16
# The first magic number with the 16-byte PEP 552 header (Python 3.7).
_FIRST_PEP552_MAGIC: Final = 3392


def source_for(path: str) -> str | None:
    """``pkg/mod.py`` for ``pkg/__pycache__/mod.cpython-310[.opt-1].pyc``; None for other paths."""
    parent, _, name = path.rpartition("/")
    if not name.endswith(".pyc") or not (parent == "__pycache__" or parent.endswith("/__pycache__")):
        return None
    package = parent.removesuffix("__pycache__").rstrip("/")
    stem = name.split(".", 1)[0]
    return f"{package}/{stem}.py" if package else f"{stem}.py"


def with_fixed_mtime(data: bytes, source_mtime: int, source_size: int, fixed_time: int) -> bytes:
    """``data`` with its recorded source mtime set to ``fixed_time``, if it is a timestamp-based pyc that is
    valid for a source of ``source_mtime`` and ``source_size``; otherwise ``data`` unchanged.
    """
    if len(data) < HEADER_SIZE or data[2:4] != b"\r\n":
        return data
    if int.from_bytes(data[0:2], "little") < _FIRST_PEP552_MAGIC:
        return data
    if int.from_bytes(data[4:8], "little") != 0:
        return data
    recorded_mtime = int.from_bytes(data[8:12], "little")
    recorded_size = int.from_bytes(data[12:16], "little")
    if recorded_mtime != source_mtime & 0xFFFFFFFF or recorded_size != source_size & 0xFFFFFFFF:
        return data
    return data[:8] + (fixed_time & 0xFFFFFFFF).to_bytes(4, "little") + data[12:]
