"""The runtime manifest: what a runtime disk holds, file by file, and the one verifier for it.

The image builder (``sdworker_images``) writes ``/.sdworker/manifest.json`` into every runtime disk image;
the node agent reads it back after mounting the disk and compares it with ``RuntimeDisk.spec.imageDigest``.
Both import this module, so "the digest" and "verified" mean exactly one thing on both sides: the builder
computes the digest with ``content_digest`` and the agent re-checks with ``verify``. It owns the JSON format,
the canonical form the digest is taken over, the tree walk (which never follows symlinks) and file hashing.

Standard library only and no processes: the agent runs it as root against a freshly mounted disk.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

FORMAT: Final = "sdworker.dev/runtime-manifest/v1"
DIGEST_PREFIX: Final = "sha256:"
MANIFEST_DIR: Final = ".sdworker"
MANIFEST_NAME: Final = "manifest.json"
MANIFEST_PATH: Final = f"{MANIFEST_DIR}/{MANIFEST_NAME}"
# Names at the root that are not runtime content: the manifest's own directory (it cannot list itself) and
# the directory mkfs.ext4 creates on every filesystem.
RESERVED_ROOT_NAMES: Final = (MANIFEST_DIR, "lost+found")

EntryType = Literal["file", "dir", "symlink"]
ENTRY_TYPES: Final = ("file", "dir", "symlink")

_CHUNK: Final = 1 << 20
_HEX: Final = frozenset("0123456789abcdef")


class ManifestError(ValueError):
    """A manifest file that is missing, not JSON, of another format, or internally inconsistent."""


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
        """The entry as it appears in the manifest and in the digest: only the fields its type has."""
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
            raise ManifestError(f"{where}: not an object")
        path, kind = data.get("path"), data.get("type")
        if not isinstance(path, str) or not path:
            raise ManifestError(f"{where}.path: missing")
        problem = path_problem(path)
        if problem:
            raise ManifestError(f"{where}.path {path!r}: {problem}")
        if kind == "file":
            size, sha, executable = data.get("size"), data.get("sha256"), data.get("executable")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError(f"{where}.size: not a non-negative integer")
            if not isinstance(sha, str) or not is_sha256_hex(sha):
                raise ManifestError(f"{where}.sha256: not 64 lower-case hex digits")
            if not isinstance(executable, bool):
                raise ManifestError(f"{where}.executable: not a boolean")
            return cls(path, "file", size=size, sha256=sha, executable=executable)
        if kind == "symlink":
            target = data.get("target")
            if not isinstance(target, str) or not target:
                raise ManifestError(f"{where}.target: missing")
            return cls(path, "symlink", target=target)
        if kind == "dir":
            return cls(path, "dir")
        raise ManifestError(f"{where}.type: {kind!r} is not one of {', '.join(ENTRY_TYPES)}")


@dataclass(frozen=True)
class Interpreter:
    """The Python the runtime venv runs on: it must exist at ``path`` in the pod's base image."""

    path: str
    version: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``, ``entries`` sorted by path; ``digest`` is recomputed, never trusted."""

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
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ManifestError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        raw_entries = data.get("entries")
        if not isinstance(raw_entries, list):
            raise ManifestError("entries: missing")
        entries = tuple(Entry.from_json(e, f"entries[{i}]") for i, e in enumerate(raw_entries))
        paths = [e.path for e in entries]
        if paths != sorted(set(paths)):
            raise ManifestError("entries: not sorted by path, or a path repeats")
        recorded = data.get("digest")
        manifest = cls(
            entries=entries,
            interpreter=_interpreter_from_json(data.get("interpreter")),
            builder={str(k): str(v) for k, v in (data.get("builder") or {}).items()},
            source=data.get("source"),
        )
        if recorded != manifest.digest:
            raise ManifestError(
                f"digest field {recorded!r} does not match its entries ({manifest.digest}): edited by hand?"
            )
        return manifest


def _interpreter_from_json(data: object) -> Interpreter | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise ManifestError("interpreter: expected {path, version}")
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


# --- walking and hashing ---


@dataclass(frozen=True)
class HashProgress:
    """Reported while hashing: counts so far and in total, and the file being read."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    path: str


ProgressFn = Callable[[HashProgress], None]


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The hex sha256 of a regular file, read in 1 MiB chunks; ``on_bytes`` is told each chunk's size."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while True:
            n = handle.readinto(view)
            if not n:
                break
            digest.update(view[:n])
            if on_bytes:
                on_bytes(n)
    return digest.hexdigest()


@dataclass(frozen=True)
class Found:
    """A path found by ``walk``: its type as seen without following symlinks."""

    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    executable: bool
    target: str


def walk(root: Path) -> Iterator[Found]:
    """Every path under ``root`` in sorted order, symlinks not followed, the reserved root names skipped."""
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
            yield Found(rel, "file", st.st_size, bool(st.st_mode & 0o111), "")
        else:
            yield Found(rel, "other", 0, False, "")


def scan(root: Path, progress: ProgressFn | None = None) -> tuple[Entry, ...]:
    """The manifest entries of the tree at ``root``, hashing every file; other file types raise ValueError."""
    found = list(walk(root))
    others = [f.path for f in found if f.type == "other"]
    if others:
        raise ValueError(f"{others[0]}: not a regular file, directory or symlink")
    hasher = _Hasher(root, found, progress)
    entries = []
    for item in found:
        if item.type == "file":
            entries.append(Entry(item.path, "file", item.size, hasher.hash(item.path), item.executable))
        elif item.type == "symlink":
            entries.append(Entry(item.path, "symlink", target=item.target))
        else:
            entries.append(Entry(item.path, "dir"))
    return tuple(entries)


class _Hasher:
    """Hashes files one by one and reports progress against the totals known up front."""

    def __init__(self, root: Path, found: Sequence[Found], progress: ProgressFn | None) -> None:
        self.root = root
        self.progress = progress
        self.files_total = sum(1 for f in found if f.type == "file")
        self.bytes_total = sum(f.size for f in found if f.type == "file")
        self.files_done = 0
        self.bytes_done = 0

    def hash(self, rel: str) -> str:
        current = rel

        def on_bytes(n: int) -> None:
            self.bytes_done += n
            self._report(current)

        digest = sha256_file(self.root / rel, on_bytes)
        self.files_done += 1
        self._report(current)
        return digest

    def _report(self, path: str) -> None:
        if self.progress:
            self.progress(
                HashProgress(self.files_done, self.files_total, self.bytes_done, self.bytes_total, path)
            )


# --- reading and verifying ---


def read_manifest(root: Path) -> Manifest:
    """The manifest at ``root/.sdworker/manifest.json``; ManifestError if absent or invalid."""
    path = root / MANIFEST_PATH
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{MANIFEST_PATH}: missing (not an sdworker runtime disk?)") from exc
    except OSError as exc:
        raise ManifestError(f"{MANIFEST_PATH}: unreadable: {exc}") from exc
    try:
        return Manifest.from_json(text)
    except ManifestError as exc:
        raise ManifestError(f"{MANIFEST_PATH}: {exc}") from exc


class VerifyMode(enum.Enum):
    """How much of the tree ``verify`` reads; the agent picks by how long it can afford.

    DIGEST: the manifest only (its entry list hashes to the expected digest): milliseconds.
    STAT: plus every path exists with the recorded type, size, execute bit and symlink target: a
    directory walk, seconds even for 10+ GB, catches missing, extra and truncated files.
    FULL: plus every file re-hashed: reads every byte, minutes for a 10+ GB runtime.
    """

    DIGEST = "digest"
    STAT = "stat"
    FULL = "full"


@dataclass(frozen=True)
class Mismatch:
    """A path whose ``field`` differs: what the manifest says and what the tree has."""

    path: str
    field: str
    expected: str
    found: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify``: ``ok`` only when nothing at all is wrong."""

    mode: VerifyMode
    expected_digest: str
    manifest_digest: str | None
    problems: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    files_checked: int = 0
    bytes_checked: int = 0
    interpreter: Interpreter | None = None

    @property
    def ok(self) -> bool:
        return not (self.problems or self.missing or self.extra or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        """One line for a condition message or a log: what failed, with the first few paths."""
        if self.ok:
            return (
                f"verified {self.expected_digest} ({self.mode.value}: {self.files_checked} files, "
                f"{self.bytes_checked} bytes)"
            )
        parts = list(self.problems)
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_first(self.missing, limit)})")
        if self.extra:
            parts.append(f"{len(self.extra)} extra ({_first(self.extra, limit)})")
        if self.mismatched:
            shown = [f"{m.path}: {m.field} expected {m.expected}, found {m.found}" for m in self.mismatched]
            parts.append(f"{len(self.mismatched)} mismatched ({_first(shown, limit)})")
        return "; ".join(parts)


def _first(items: Sequence[str], limit: int) -> str:
    head = ", ".join(items[:limit])
    return head + (", ..." if len(items) > limit else "")


def verify(
    root: Path,
    expected_digest: str,
    mode: VerifyMode = VerifyMode.FULL,
    progress: ProgressFn | None = None,
) -> VerifyResult:
    """Check the runtime tree at ``root`` (a mounted disk, or a directory) against ``expected_digest``.

    Never raises for a bad tree: every problem is in the result. The manifest's entry list must hash to
    ``expected_digest``; then, depending on ``mode``, the tree must match the entries (see ``VerifyMode``).
    """
    try:
        parse_digest(expected_digest)
    except ValueError as exc:
        return VerifyResult(mode, expected_digest, None, problems=(str(exc),))
    try:
        manifest = read_manifest(root)
    except ManifestError as exc:
        return VerifyResult(mode, expected_digest, None, problems=(str(exc),))
    digest = manifest.digest
    if digest != expected_digest:
        problem = f"manifest digest {digest} is not the expected {expected_digest}"
        return VerifyResult(mode, expected_digest, digest, (problem,), interpreter=manifest.interpreter)
    if mode is VerifyMode.DIGEST:
        return VerifyResult(mode, expected_digest, digest, interpreter=manifest.interpreter)
    return _compare_tree(root, manifest, mode, expected_digest, progress)


def _compare_tree(
    root: Path,
    manifest: Manifest,
    mode: VerifyMode,
    expected_digest: str,
    progress: ProgressFn | None,
) -> VerifyResult:
    try:
        found = {f.path: f for f in walk(root)}
    except OSError as exc:
        problem = f"cannot walk {root}: {exc}"
        return VerifyResult(mode, expected_digest, manifest.digest, (problem,))
    wanted = {e.path: e for e in manifest.entries}
    missing = tuple(p for p in wanted if p not in found)
    extra = tuple(p for p in found if p not in wanted)
    mismatched: list[Mismatch] = []
    to_hash: list[Entry] = []
    for path, entry in wanted.items():
        item = found.get(path)
        if item is None:
            continue
        if item.type != entry.type:
            mismatched.append(Mismatch(path, "type", entry.type, item.type))
        elif entry.type == "symlink" and item.target != entry.target:
            mismatched.append(Mismatch(path, "target", entry.target, item.target))
        elif entry.type == "file":
            if item.size != entry.size:
                mismatched.append(Mismatch(path, "size", str(entry.size), str(item.size)))
            elif item.executable != entry.executable:
                mismatched.append(Mismatch(path, "executable", str(entry.executable), str(item.executable)))
            else:
                to_hash.append(entry)
    files_checked = sum(1 for e in manifest.entries if e.type == "file" and e.path in found)
    bytes_checked = 0
    if mode is VerifyMode.FULL:
        hasher = _Hasher(root, [found[e.path] for e in to_hash], progress)
        for entry in to_hash:
            try:
                actual = hasher.hash(entry.path)
            except OSError as exc:
                mismatched.append(Mismatch(entry.path, "sha256", entry.sha256, f"unreadable ({exc})"))
                continue
            if actual != entry.sha256:
                mismatched.append(Mismatch(entry.path, "sha256", entry.sha256, actual))
        bytes_checked = hasher.bytes_done
    mismatched.sort(key=lambda m: m.path)
    return VerifyResult(
        mode,
        expected_digest,
        manifest.digest,
        missing=missing,
        extra=extra,
        mismatched=tuple(mismatched),
        files_checked=files_checked,
        bytes_checked=bytes_checked,
        interpreter=manifest.interpreter,
    )
