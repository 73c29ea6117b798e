"""The runtime tree before it becomes a filesystem: checked, planned, then staged with every file hashed.

Everything that can be wrong with a tree is found here, before any image is written: file types other than
files, directories and symlinks; names debugfs cannot handle; symlinks that resolve outside the runtime root
(resolved the way the kernel would, through other symlinks, with the tree mounted anywhere); a venv made for
another interpreter than the one the spec (and so the base image) provides; a file whose sha256 is not the
one the spec declares. ``stage`` then copies the tree (or, for a tree the builder assembled itself, works in
place), normalising modes to 0644/0755 and times to the fixed build time, keeping timestamp pycs valid
(``pyc``) and hashing every byte it copies, so the content index describes exactly the bytes mkfs.ext4 reads.
Files are copied and hashed on a thread pool (``hash_workers``): sha256, copy_file_range and reads all
release the GIL, and on a tree of many small files the per-file syscalls are most of the time.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from sdworker_content.index import Entry, Interpreter
from sdworker_content.walk import HashCounter, ProgressFn, sha256_fd, walk
from sdworker_images import pyc
from sdworker_images.errors import BuildError
from sdworker_images.spec import VENV_DIR, PythonSpec, builder_path_problem

PYVENV_CFG: Final = f"{VENV_DIR}/pyvenv.cfg"
NAME_MAX_BYTES: Final = 255
SYMLINK_MAX_HOPS: Final = 40
_CHUNK: Final = 1 << 20
# Smaller files are read once into memory, hashed and written from the same buffer.
_SMALL_FILE: Final = 1 << 20


@dataclass(frozen=True)
class Item:
    """One path to put in the image: where its bytes come from and, if declared, the sha256 they must have."""

    path: str
    type: Literal["file", "dir", "symlink"]
    source: Path | None = None
    size: int = 0
    executable: bool = False
    target: str = ""
    expected_sha256: str | None = None
    declared_by: str | None = None
    mtime: int = 0


def scan(root: Path) -> list[Item]:
    """Every path under ``root`` (sorted; reserved root names skipped), with names and types checked.

    The walk is the content index's own (``sdworker_content.walk``), so the builder and the verifier see
    the same tree; what the index cannot hold (sockets, fifos, devices, bad names) fails here.
    """
    if not root.is_dir():
        raise BuildError(f"{root}: not a directory")
    lost_found = root / "lost+found"
    if lost_found.is_dir() and not lost_found.is_symlink() and os.listdir(lost_found):
        raise BuildError("lost+found: not empty; lost+found is reserved at the runtime root")
    # (An old index is replaced; an empty lost+found is what mkfs makes anyway: walk skips both.)
    items: list[Item] = []
    for found in walk(root):
        _check_name(found.path)
        if found.type == "other":
            raise BuildError(
                f"{found.path}: not a regular file, directory or symlink (sockets, fifos and devices)"
            )
        if found.type == "file":
            items.append(
                Item(
                    found.path,
                    "file",
                    source=root / found.path,
                    size=found.size,
                    executable=found.executable,
                    mtime=found.mtime,
                )
            )
        else:
            items.append(Item(found.path, found.type, target=found.target))
    items.sort(key=lambda i: i.path)  # path order, not walk order ("a-b" sorts before "a/b")
    return items


def _check_name(rel: str) -> None:
    try:
        encoded = rel.rsplit("/", 1)[-1].encode("utf-8")
    except UnicodeEncodeError:
        raise BuildError(f"{rel!r}: name is not valid UTF-8") from None
    if len(encoded) > NAME_MAX_BYTES:
        raise BuildError(f"{rel}: name longer than {NAME_MAX_BYTES} bytes")
    problem = builder_path_problem(rel)
    if problem:
        raise BuildError(f"{rel!r}: {problem}")


# --- the interpreter ---


def read_pyvenv(root: Path) -> dict[str, str]:
    path = root / PYVENV_CFG
    if not path.is_file() or path.is_symlink():
        raise BuildError(
            f"{PYVENV_CFG}: missing: a runtime tree needs the venv the pods run "
            f"(/usr/bin/python3.X -m venv {VENV_DIR})"
        )
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def check_interpreter(
    root: Path,
    items: Sequence[Item],
    expected: PythonSpec | None,
    *,
    from_spec: bool = True,
) -> Interpreter:
    """The interpreter the venv in ``root`` needs, checked against ``expected`` (from runtime.yaml) if given.

    The venv finds its interpreter through ``pyvenv.cfg`` (``home``) and the absolute links in ``venv/bin``;
    in the pod both must resolve in the base image, so they must name ``python.path`` exactly. ``from_spec``
    says whether ``expected`` came from runtime.yaml or from the command line, for the messages.
    """
    path_origin = "runtime.yaml python.path" if from_spec else "--python-path"
    version_origin = "runtime.yaml python.version" if from_spec else "--python-version"
    cfg = read_pyvenv(root)
    home = cfg.get("home", "").rstrip("/") or None
    version = cfg.get("version") or cfg.get("version_info")
    if not home or not version:
        raise BuildError(f"{PYVENV_CFG}: no 'home' or 'version' line; is this a venv?")
    minor = ".".join(version.split(".")[:2])
    absolute_links = {
        i.path: i.target
        for i in items
        if i.type == "symlink" and i.path.startswith(f"{VENV_DIR}/bin/") and i.target.startswith("/")
    }
    if expected is not None:
        if os.path.normpath(home) != os.path.dirname(expected.path):
            raise BuildError(
                f"interpreter mismatch: {PYVENV_CFG} has home = {home}, but {path_origin} is "
                f"{expected.path}: in the pod the venv would look for Python in {home}"
            )
        if not expected.accepts(version):
            raise BuildError(
                f"interpreter mismatch: {PYVENV_CFG} has version = {version}, but {version_origin} "
                f"is {expected.version}"
            )
        path = expected.path
    else:
        targets = sorted(set(absolute_links.values()))
        if len(targets) > 1:
            raise BuildError(f"interpreter mismatch: {VENV_DIR}/bin links to several interpreters: {targets}")
        path = targets[0] if targets else f"{home}/python{minor}"
        if os.path.dirname(path) != os.path.normpath(home):
            raise BuildError(
                f"interpreter mismatch: {VENV_DIR}/bin links to {path}, but {PYVENV_CFG} has home = {home}"
            )
    for link, target in sorted(absolute_links.items()):
        if target != path:
            raise BuildError(
                f"interpreter mismatch: {link} -> {target}, but the venv's interpreter is {path}"
                + (f" ({path_origin})" if expected else "")
            )
    for item in items:
        parent, _, name = item.path.rpartition("/")
        if parent == f"{VENV_DIR}/lib" and name.startswith("python3.") and name != f"python{minor}":
            raise BuildError(
                f"interpreter mismatch: {item.path} holds packages for Python {name[6:]}, "
                f"but the venv is Python {version}"
            )
    return Interpreter(path=path, version=version)


# --- symlinks ---


def symlink_problem(path: str, links: Mapping[str, str], interpreter: str) -> str | None:
    """Why the symlink at ``path`` resolves outside the runtime root, or None if it stays inside.

    Resolution follows the kernel's rules (each component in turn, symlinks expanded where they are met),
    so ``d -> .`` plus ``x -> d/..`` is caught although ``x``'s target looks harmless. The one absolute
    target allowed is the interpreter itself, which the base image provides.
    """
    target = links[path]
    current = path.split("/")[:-1]
    pending = target.split("/")
    if target.startswith("/"):
        return None if target == interpreter else f"symlink to {target!r} points outside the runtime root"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return f"symlink to {target!r} points outside the runtime root"
            current.pop()
            continue
        candidate = "/".join([*current, part])
        if candidate not in links:
            current.append(part)
            continue
        hops += 1
        if hops > SYMLINK_MAX_HOPS:
            return f"symlink to {target!r} loops"
        next_target = links[candidate]
        if next_target.startswith("/"):
            if next_target == interpreter and not pending:
                return None
            return f"symlink to {target!r} leads to {next_target!r}, outside the runtime root"
        pending = next_target.split("/") + pending
    return None


def check_symlinks(items: Sequence[Item], interpreter: str) -> None:
    links = {i.path: i.target for i in items if i.type == "symlink"}
    for path in sorted(links):
        problem = symlink_problem(path, links, interpreter)
        if problem:
            raise BuildError(f"{path}: {problem}")


# --- staging ---


def hash_workers() -> int:
    """Threads that copy and hash files: twice the cores, since part of each file's time is syscalls and
    page-cache copies (sha256 and copy_file_range release the GIL; so does every read)."""
    return min(32, 2 * (os.cpu_count() or 1))


def stage(
    items: Sequence[Item],
    dest: Path | None,
    *,
    fixed_time: int,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> tuple[Entry, ...]:
    """Copy ``items`` under ``dest`` (or, with ``dest`` None, fix them up where they are) and hash them.

    Modes become 0755 (any execute bit) or 0644, directories 0755; timestamp pycs are kept valid for
    ``fixed_time``; a declared sha256 that does not match fails the build naming the declaring field.
    Directories and symlinks are made first, in order; files are then copied and hashed on ``workers``
    threads (the entries come back in path order whatever the threads did; the first failure in path order
    is the one reported).
    """
    ordered = sorted(items, key=lambda i: i.path)
    sources = {i.path: i for i in ordered if i.type == "file"}
    total_files = len(sources)
    total_bytes = sum(i.size for i in sources.values())
    counter = HashCounter(total_files, total_bytes, progress)
    entries: list[Entry | None] = []
    files: list[tuple[int, Item, Path | None]] = []
    for item in ordered:
        out = dest / item.path if dest is not None else None
        if item.type == "dir":
            if out is not None:
                out.mkdir()
                out.chmod(0o755)
            entries.append(Entry(item.path, "dir"))
        elif item.type == "symlink":
            if out is not None:
                os.symlink(item.target, out)
            entries.append(Entry(item.path, "symlink", target=item.target))
        else:
            files.append((len(entries), item, out))
            entries.append(None)
    threads = max(1, min(workers or hash_workers(), len(files)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sdworker-hash") as pool:
        futures = [
            (index, pool.submit(_stage_file, item, out, sources, fixed_time, counter))
            for index, item, out in files
        ]
        try:
            for index, future in futures:
                entries[index] = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    # Directories last and deepest first: adding an entry changes a directory's mtime, setting a
    # child's times does not.
    for item in reversed(ordered):
        if item.type != "file":
            _fix_times(dest / item.path if dest is not None else None, fixed_time)
    return tuple(e for e in entries if e is not None)


def _fix_times(path: Path | None, fixed_time: int) -> None:
    """Set atime and mtime to ``fixed_time`` (mkfs.ext4 copies both), so normalisation has less to do.

    Only on paths the builder owns (the staging copy, or a tree it assembled): ``path`` None is a symlink
    or directory of a tree worked on in place, left as it is (``ext4.normalize_inodes`` fixes the image).
    """
    if path is not None:
        ns = fixed_time * 1_000_000_000
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def _stage_file(
    item: Item,
    out: Path | None,
    sources: Mapping[str, Item],
    fixed_time: int,
    counter: HashCounter,
) -> Entry:
    assert item.source is not None
    mode = 0o755 if item.executable else 0o644
    source_py = pyc.source_for(item.path)
    if source_py is not None and source_py in sources:
        digest, size = _stage_pyc(item, out, sources[source_py], fixed_time)
        target = out if out is not None else item.source
        target.chmod(mode)
        _fix_times(target, fixed_time)
        counter.add(item.path, size, file_done=True)
    else:
        digest, size = _copy_and_hash(item, out, counter, mode, fixed_time)
        counter.add(item.path, 0, file_done=True)
    if item.expected_sha256 is not None and digest != item.expected_sha256:
        raise BuildError(
            f"{item.declared_by} ({item.path}): sha256 mismatch: runtime.yaml says {item.expected_sha256}, "
            f"the file has {digest}"
        )
    return Entry(item.path, "file", size=size, sha256=digest, executable=item.executable)


def _copy_and_hash(
    item: Item, out: Path | None, counter: HashCounter, mode: int, fixed_time: int
) -> tuple[str, int]:
    """Copy ``item`` to ``out`` and hash the bytes written; then set its mode and times, all by descriptor.

    The content index describes exactly the bytes mkfs reads, even if the source changes meanwhile: a small
    file is read once and the same buffer is hashed and written; a big one is copied in the kernel
    (copy_file_range, which lets a filesystem share extents) and the copy, still in the page cache, is read
    back and hashed. On a tree of 20,000 small files the syscalls per file are most of the cost (and, with
    threads, each one is a GIL hand-over), so there are as few as possible: no path lookups after the opens.
    """
    assert item.source is not None
    fd = os.open(item.source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if out is None:
            digest, size = sha256_fd(fd, lambda n: counter.add(item.path, n))
        else:
            out_fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                if item.size < _SMALL_FILE:
                    data = os.read(fd, item.size + 1)
                    _write_all(out_fd, memoryview(data))
                    digest, size = hashlib.sha256(data).hexdigest(), len(data)
                    counter.add(item.path, size)
                else:
                    copied = _copy_into(fd, out_fd)
                    if copied != item.size:
                        raise _changed(item, copied)
                    os.lseek(out_fd, 0, os.SEEK_SET)
                    digest, size = sha256_fd(out_fd, lambda n: counter.add(item.path, n))
                _settle(out_fd, mode, fixed_time)
            finally:
                os.close(out_fd)
        if out is None:
            _settle(fd, mode, fixed_time)
    finally:
        os.close(fd)
    if size != item.size:
        raise _changed(item, size)
    return digest, size


def _changed(item: Item, size: int) -> BuildError:
    return BuildError(f"{item.path}: changed while the image was being built ({item.size} -> {size} bytes)")


def _settle(fd: int, mode: int, fixed_time: int) -> None:
    """Mode and times as mkfs.ext4 should copy them (see ``_fix_times``)."""
    os.fchmod(fd, mode)
    ns = fixed_time * 1_000_000_000
    os.utime(fd, ns=(ns, ns))


def _copy_into(source_fd: int, fd: int) -> int:
    """Copy the rest of ``source_fd`` into ``fd``; returns how many bytes. copy_file_range keeps the data in
    the kernel; the read/write loop is the fallback where it is refused.
    """
    copied = 0
    try:
        while n := os.copy_file_range(source_fd, fd, _CHUNK * 64):
            copied += n
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or copied:
            raise
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while n := os.readv(source_fd, [view]):
        _write_all(fd, view[:n])
        copied += n
    return copied


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _stage_pyc(item: Item, out: Path | None, source: Item, fixed_time: int) -> tuple[str, int]:
    assert item.source is not None
    data = item.source.read_bytes()
    fixed = pyc.with_fixed_mtime(data, source.mtime, source.size, fixed_time)
    if out is not None:
        out.write_bytes(fixed)
    elif fixed != data:
        item.source.write_bytes(fixed)
    return hashlib.sha256(fixed).hexdigest(), len(fixed)
