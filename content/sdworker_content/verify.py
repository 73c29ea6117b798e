"""Reading a disk's content index and checking the tree against it: what the node agent runs after mounting.

``verify`` never raises for a bad tree or a bad index: every problem is in its ``VerifyResult``, which the
agent turns into the RuntimeDisk's condition message. How much it reads is the caller's choice
(``VerifyMode``), from the index alone (milliseconds) to every byte (minutes for a 10+ GB runtime).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdworker_content.index import (
    INDEX_PATH,
    ContentIndex,
    ContentIndexError,
    Entry,
    Interpreter,
    parse_digest,
)
from sdworker_content.walk import HashCounter, ProgressFn, hash_tree_file, walk


def read_index(root: Path) -> ContentIndex:
    """The index at ``root/.sdworker/manifest.json``; ContentIndexError if absent or invalid."""
    path = root / INDEX_PATH
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise ContentIndexError(f"{INDEX_PATH}: missing (not an sdworker runtime disk?)") from exc
    except OSError as exc:
        raise ContentIndexError(f"{INDEX_PATH}: unreadable: {exc}") from exc
    try:
        return ContentIndex.from_json(text)
    except ContentIndexError as exc:
        raise ContentIndexError(f"{INDEX_PATH}: {exc}") from exc


class VerifyMode(enum.Enum):
    """How much of the tree ``verify`` reads; the agent picks by how long it can afford.

    DIGEST: the index only (its entry list hashes to the expected digest): milliseconds.
    STAT: plus every path exists with the recorded type, size, execute bit and symlink target: a
    directory walk, seconds even for 10+ GB, catches missing, extra and truncated files.
    FULL: plus every file re-hashed: reads every byte, minutes for a 10+ GB runtime.
    """

    DIGEST = "digest"
    STAT = "stat"
    FULL = "full"


@dataclass(frozen=True)
class Mismatch:
    """A path whose ``field`` differs: what the index says and what the tree has."""

    path: str
    field: str
    expected: str
    found: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify``: ``ok`` only when nothing at all is wrong.

    ``index_digest`` is the digest of the index found on the disk (None when there is no readable one).
    """

    mode: VerifyMode
    expected_digest: str
    index_digest: str | None
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

    Never raises for a bad tree: every problem is in the result. The index's entry list must hash to
    ``expected_digest``; then, depending on ``mode``, the tree must match the entries (see ``VerifyMode``).
    """
    try:
        parse_digest(expected_digest)
    except ValueError as exc:
        return VerifyResult(mode, expected_digest, None, problems=(str(exc),))
    try:
        index = read_index(root)
    except ContentIndexError as exc:
        return VerifyResult(mode, expected_digest, None, problems=(str(exc),))
    digest = index.digest
    if digest != expected_digest:
        # "manifest digest": the agent's condition messages name the file the digest is read from.
        problem = f"manifest digest {digest} is not the expected {expected_digest}"
        return VerifyResult(mode, expected_digest, digest, (problem,), interpreter=index.interpreter)
    if mode is VerifyMode.DIGEST:
        return VerifyResult(mode, expected_digest, digest, interpreter=index.interpreter)
    return _compare_tree(root, index, mode, expected_digest, progress)


def _compare_tree(
    root: Path,
    index: ContentIndex,
    mode: VerifyMode,
    expected_digest: str,
    progress: ProgressFn | None,
) -> VerifyResult:
    try:
        found = {f.path: f for f in walk(root)}
    except OSError as exc:
        problem = f"cannot walk {root}: {exc}"
        return VerifyResult(mode, expected_digest, index.digest, (problem,))
    wanted = {e.path: e for e in index.entries}
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
    files_checked = sum(1 for e in index.entries if e.type == "file" and e.path in found)
    bytes_checked = 0
    if mode is VerifyMode.FULL:
        counter = HashCounter(len(to_hash), sum(found[e.path].size for e in to_hash), progress)
        for entry in to_hash:
            try:
                actual = hash_tree_file(root, entry.path, counter)
            except OSError as exc:
                mismatched.append(Mismatch(entry.path, "sha256", entry.sha256, f"unreadable ({exc})"))
                continue
            if actual != entry.sha256:
                mismatched.append(Mismatch(entry.path, "sha256", entry.sha256, actual))
        bytes_checked = counter.bytes_done
    mismatched.sort(key=lambda m: m.path)
    return VerifyResult(
        mode,
        expected_digest,
        index.digest,
        missing=missing,
        extra=extra,
        mismatched=tuple(mismatched),
        files_checked=files_checked,
        bytes_checked=bytes_checked,
        interpreter=index.interpreter,
    )
