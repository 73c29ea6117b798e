"""Real block devices behind simulated disks: sparse copies, loop devices and by-id symlinks.

This is what lets the node agent be tested against the real thing: an image is an ext4 file
in the simulator's state directory; a disk created from it is a sparse copy (a reflink where the
filesystem can); attaching it to an instance sets up a loop device (read-only for ``READ_ONLY``)
and publishes ``<devroot>/disk/by-id/google-<deviceName>`` (plus the
``scsi-0Google_PersistentDisk_<deviceName>`` alias the guest environment also creates), where
each instance has its own dev root, as each VM has its own ``/dev``.

Owns every loop device and file it creates, and nothing else: before detaching a loop device it
checks the kernel still backs it with our file, and ``sweep`` finds leftovers of a killed run by
their backing file's path under our state directory. All commands go through ``procs.run``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sdworker_tools import procs

GIB = 1024**3
BY_ID_PREFIXES = ("google-", "scsi-0Google_PersistentDisk_")
_SYS_BLOCK = Path("/sys/block")


class BlockDeviceError(RuntimeError):
    """A file or loop-device step failed (the message carries the command's stderr)."""


def _run(argv: list[str], timeout: float = 120.0) -> str:
    try:
        return procs.run(argv, timeout=timeout).stdout
    except subprocess.CalledProcessError as exc:
        raise BlockDeviceError(f"{' '.join(argv)} failed: {(exc.stderr or '').strip()}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlockDeviceError(f"{' '.join(argv)} failed: {exc}") from exc


def backing_file(loop: str) -> str | None:
    """The file the kernel backs ``/dev/loopN`` with, or None if it is not set up."""
    try:
        text = (_SYS_BLOCK / Path(loop).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


def loop_devices_under(directory: Path) -> list[tuple[str, str]]:
    """(``/dev/loopN``, backing file) for every loop device backed by a file under ``directory``."""
    root = str(directory.resolve()) + os.sep
    found = []
    for entry in sorted(_SYS_BLOCK.glob("loop*")):
        backing = backing_file(entry.name)
        if backing is not None and backing.startswith(root):
            found.append((f"/dev/{entry.name}", backing))
    return found


def is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def materialize_image(source: Path, dest: Path) -> int:
    """Put an image's raw disk at ``dest`` (sparse) and return its size in bytes.

    ``source`` is a raw filesystem image, or a GCE import archive (``.tar.gz`` holding ``disk.raw``,
    as images.insert takes it).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_archive(source):
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as tmp:
            # -S keeps holes (the archive is written sparse); GNU tar detects gzip by itself.
            _run(["tar", "-xSf", str(source), "-C", tmp, "disk.raw"], timeout=600)
            os.replace(Path(tmp) / "disk.raw", dest)
    else:
        _run(["cp", "--reflink=auto", "--sparse=always", str(source), str(dest)], timeout=600)
    return dest.stat().st_size


def clone_disk(image_file: Path, dest: Path, size_bytes: int) -> None:
    """A disk's backing file: a sparse copy of the image grown (still sparse) to the disk size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(["cp", "--reflink=auto", "--sparse=always", str(image_file), str(dest)], timeout=600)
    if dest.stat().st_size < size_bytes:
        os.truncate(dest, size_bytes)


def create_blank(dest: Path, size_bytes: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as f:
        f.truncate(size_bytes)


def attach_loop(backing: Path, *, read_only: bool) -> str:
    argv = ["losetup", "--find", "--show"]
    if read_only:
        argv.append("--read-only")
    loop = _run([*argv, str(backing)]).strip()
    if not loop.startswith("/dev/loop"):
        raise BlockDeviceError(f"losetup printed {loop!r}, not a loop device")
    return loop


def detach_loop(loop: str, backing: Path) -> None:
    """``losetup -d``, only if ``loop`` is still ours (a mounted device is released on unmount)."""
    if backing_file(loop) != str(backing.resolve()):
        return
    with contextlib.suppress(BlockDeviceError):
        _run(["losetup", "-d", loop])


def by_id_dir(dev_root: Path) -> Path:
    return dev_root / "disk" / "by-id"


def publish(dev_root: Path, device_name: str, loop: str) -> Path:
    """Create the by-id symlinks (atomically: symlink beside, then rename) and return the google- one."""
    directory = by_id_dir(dev_root)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix in BY_ID_PREFIXES:
        link = directory / f"{prefix}{device_name}"
        tmp = directory / f".{prefix}{device_name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(loop)
        os.replace(tmp, link)
    return directory / f"{BY_ID_PREFIXES[0]}{device_name}"


def unpublish(dev_root: Path, device_name: str) -> None:
    for prefix in BY_ID_PREFIXES:
        with contextlib.suppress(FileNotFoundError):
            (by_id_dir(dev_root) / f"{prefix}{device_name}").unlink()


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def sweep(state_dir: Path) -> list[str]:
    """Detach every loop device backed by a file under ``state_dir``; return what was detached."""
    released = []
    for loop, backing in loop_devices_under(state_dir):
        detach_loop(loop, Path(backing))
        released.append(loop)
    return released


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
