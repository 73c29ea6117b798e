"""The content index format: one entry per path, the digest over their canonical form, the JSON file.

Pure data and parsing (no file system access): ``walk`` produces entries from a tree, ``verify`` reads the
file back. The digest is the image's identity (``RuntimeDisk.spec.imageDigest``), so the canonical form is
fixed; the format string and the file name predate the "content index" name and stay as built disks
carry them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

FORMAT: Final = "sdworker.dev/runtime-manifest/v1"
DIGEST_PREFIX: Final = "sha256:"
INDEX_DIR: Final = ".sdworker"
INDEX_NAME: Final = "manifest.json"
INDEX_PATH: Final = f"{INDEX_DIR}/{INDEX_NAME}"
# Names at the root that are not runtime content: the index's own directory (it cannot list itself) and
# the directory mkfs.ext4 creates on every filesystem.
RESERVED_ROOT_NAMES: Final = (INDEX_DIR, "lost+found")

EntryType = Literal["file", "dir", "symlink"]
ENTRY_TYPES: Final = ("file", "dir", "symlink")

_HEX: Final = frozenset("0123456789abcdef")


class ContentIndexError(ValueError):
    """An index file that is missing, not JSON, of another format, or internally inconsistent."""


@dataclass(frozen=True)
class Entry:
    """One path of the runtime tree, relative to its root with ``/`` separators.

    Files carry size, sha256 and whether any execute bit is set (the image normalises modes to 0644/0755, so
    that bit is the whole mode); symlinks carry their target exactly as stored; directories carry nothing.
    """

    path: str
    type: EntryType
    size: int = 0
    sha256: str = ""
    executable: bool = False
    target: str = ""

    def canonical(self) -> dict[str, Any]:
        """The entry as it appears in the index and in the digest: only the fields its type has."""
        if self.type == "file":
            return {
                "executable": self.executable,
                "path": self.path,
                "sha256": self.sha256,
                "size": self.size,
                "type": "file",
            }
        if self.type == "symlink":
            return {"path": self.path, "target": self.target, "type": "symlink"}
        return {"path": self.path, "type": "dir"}

    @classmethod
    def from_json(cls, data: object, where: str) -> Entry:
        if not isinstance(data, dict):
            raise ContentIndexError(f"{where}: not an object")
        path, kind = data.get("path"), data.get("type")
        if not isinstance(path, str) or not path:
            raise ContentIndexError(f"{where}.path: missing")
        problem = path_problem(path)
        if problem:
            raise ContentIndexError(f"{where}.path {path!r}: {problem}")
        if kind == "file":
            size, sha, executable = data.get("size"), data.get("sha256"), data.get("executable")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ContentIndexError(f"{where}.size: not a non-negative integer")
            if not isinstance(sha, str) or not is_sha256_hex(sha):
                raise ContentIndexError(f"{where}.sha256: not 64 lower-case hex digits")
            if not isinstance(executable, bool):
                raise ContentIndexError(f"{where}.executable: not a boolean")
            return cls(path, "file", size=size, sha256=sha, executable=executable)
        if kind == "symlink":
            target = data.get("target")
            if not isinstance(target, str) or not target:
                raise ContentIndexError(f"{where}.target: missing")
            return cls(path, "symlink", target=target)
        if kind == "dir":
            return cls(path, "dir")
        raise ContentIndexError(f"{where}.type: {kind!r} is not one of {', '.join(ENTRY_TYPES)}")


@dataclass(frozen=True)
class Interpreter:
    """The Python the runtime venv runs on: it must exist at ``path`` in the pod's base image."""

    path: str
    version: str


@dataclass(frozen=True)
class ContentIndex:
    """The parsed index file, ``entries`` sorted by path; ``digest`` is recomputed, never trusted."""

    entries: tuple[Entry, ...]
    interpreter: Interpreter | None = None
    builder: Mapping[str, str] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # Path order is part of the format (and of the digest); callers may hand entries in walk order.
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: e.path)))

    @property
    def digest(self) -> str:
        return content_digest(self.entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.type == "file")

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries if e.type == "file")

    def to_json(self) -> str:
        """The file's text: a readable header, then one entry per line (diffable, greppable, stable)."""
        header: dict[str, Any] = {
            "format": FORMAT,
            "digest": self.digest,
            "totalBytes": self.total_bytes,
            "fileCount": self.file_count,
            "entryCount": len(self.entries),
            "interpreter": (
                {"path": self.interpreter.path, "version": self.interpreter.version}
                if self.interpreter
                else None
            ),
            "builder": dict(self.builder),
            "source": self.source,
        }
        lines = ["{"]
        for key, value in header.items():
            lines.append(f"  {json.dumps(key)}: {_dumps(value)},")
        lines.append('  "entries": [')
        rows = [f"    {_dumps(e.canonical())}" for e in self.entries]
        lines.append(",\n".join(rows))
        lines.append("  ]")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> ContentIndex:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ContentIndexError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContentIndexError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ContentIndexError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        raw_entries = data.get("entries")
        if not isinstance(raw_entries, list):
            raise ContentIndexError("entries: missing")
        entries = tuple(Entry.from_json(e, f"entries[{i}]") for i, e in enumerate(raw_entries))
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise ContentIndexError("entries: not sorted by path, or a path repeats")
        recorded = data.get("digest")
        index = cls(
            entries=entries,
            interpreter=_interpreter_from_json(data.get("interpreter")),
            builder={str(k): str(v) for k, v in (data.get("builder") or {}).items()},
            source=data.get("source"),
        )
        if recorded != index.digest:
            raise ContentIndexError(
                f"digest field {recorded!r} does not match its entries ({index.digest}): edited by hand?"
            )
        return index


def _interpreter_from_json(data: object) -> Interpreter | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise ContentIndexError("interpreter: expected {path, version}")
    return Interpreter(path=data["path"], version=str(data.get("version", "")))


def _dumps(value: object) -> str:
    # ASCII-only, sorted, no spaces: the same bytes from any JSON implementation that follows these rules.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def content_digest(entries: Iterable[Entry]) -> str:
    """``sha256:<hex>`` over the canonical entry list: the compact, key-sorted, ASCII JSON array of
    ``Entry.canonical()`` in path order. Timestamps, owners and inode numbers are not part of it.
    """
    ordered = sorted(entries, key=lambda e: e.path)
    canonical = _dumps([e.canonical() for e in ordered]).encode("ascii")
    return DIGEST_PREFIX + hashlib.sha256(canonical).hexdigest()


def parse_digest(text: str) -> str:
    """The hex part of ``sha256:<64 hex>``; ValueError for anything else (upper case included)."""
    hex_part = text.removeprefix(DIGEST_PREFIX)
    if not text.startswith(DIGEST_PREFIX) or not is_sha256_hex(hex_part):
        raise ValueError(f"{text!r} is not a digest of the form sha256:<64 lower-case hex digits>")
    return hex_part


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name something inside a runtime root, or None if it can."""
    if not path:
        return "empty path"
    if path.startswith("/"):
        return "absolute path"
    parts = path.split("/")
    if any(p in ("", ".") for p in parts):
        return "empty or '.' segment"
    if ".." in parts:
        return "'..' segment escapes the runtime root"
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        return "control character in name"
    return None
