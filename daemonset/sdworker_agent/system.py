"""The node agent's hands on the host: devices, filesystem checks, mount and unmount.

Everything that runs a program or touches a block device lives here and nowhere else, so the rest of the
agent can be reasoned about (and tested) as decisions over observations. Calls are blocking; the agent runs
them in worker threads. Each failure raises ``HostError`` with an UpperCamelCase reason and a message
that says what was expected and what was found, ready to be written to a RuntimeDisk's status.

Choices:

- Devices are found by id (``<dev-root>/disk/by-id/google-<deviceName>``, the udev link GCE's guest
  environment creates), never by ``/dev/sdX``, whose order is not stable across boots and attaches.
- The filesystem check is ``blkid -p`` (the superblock says ext4) followed by ``e2fsck -n`` (read-only,
  never writes). Without ``-f`` e2fsck validates the superblock and group descriptors and does the full
  five-pass check only when the filesystem says it is not clean, so a good 50 GB disk costs milliseconds
  while a damaged one is caught before the kernel sees it. ``full_check=True`` forces all passes.
- Mounts are read-only with ``noload``: the journal is never replayed, so the disk is bit-for-bit the
  image that was verified, and a disk attached READ_ONLY to many nodes can be mounted at all.
- Unmount is never lazy, but it is no guard for running pods: a pod's ``hostPath`` is a bind in the
  container's own mount namespace, so the host's unmount succeeds (no EBUSY) while the pod still reads
  the filesystem (tests/integration/test_rollout.py). The operator asks for an unmount (deletes the
  RuntimeDisk) only once no pod bound to the node uses the runtime (``domain.teardown.pods_using``);
  EBUSY here only means a host process holds it.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sdworker_agent import mountinfo

BY_ID_PREFIX: Final = "google-"
EXPECTED_FSTYPE: Final = "ext4"
MOUNT_OPTIONS: Final = "ro,noload"
COMMAND_TIMEOUT: Final = 120.0
UNMOUNT_LAYERS: Final = 16
_OUTPUT_TAIL: Final = 600


class HostError(Exception):
    """A host operation failed; ``reason`` is UpperCamelCase, ``message`` says expected vs found."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Device:
    by_id: str  # the stable link the agent looked up
    path: str  # the block device it resolves to (/dev/sdb, /dev/nvme0n2, /dev/loop3)
    major: int
    minor: int

    @property
    def number(self) -> tuple[int, int]:
        return (self.major, self.minor)


def by_id_path(dev_root: str, device_name: str) -> str:
    return os.path.join(dev_root, "disk", "by-id", f"{BY_ID_PREFIX}{device_name}")


def find_device(dev_root: str, device_name: str) -> Device | None:
    """The block device behind ``google-<device_name>`` now, or None if the link is not there (yet)."""
    link = by_id_path(dev_root, device_name)
    try:
        st = os.stat(link)  # follows the link
    except FileNotFoundError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        raise HostError(
            "NotABlockDevice",
            f"expected a block device at {link}, found {_file_kind(st.st_mode)} ({os.path.realpath(link)})",
        )
    return Device(link, os.path.realpath(link), os.major(st.st_rdev), os.minor(st.st_rdev))


def wait_for_device(
    dev_root: str,
    device_name: str,
    *,
    timeout: float,
    interval: float = 0.25,
    should_stop: Callable[[], bool] = lambda: False,
) -> Device:
    """Poll for the by-id link (udev creates it a moment after the attach completes)."""
    deadline = time.monotonic() + timeout
    while True:
        device = find_device(dev_root, device_name)
        if device is not None:
            return device
        if should_stop():
            raise HostError("Aborted", "stopped while waiting for the device")
        if time.monotonic() >= deadline:
            raise HostError(
                "DeviceNotFound",
                f"expected the attached disk at {by_id_path(dev_root, device_name)} "
                f"(deviceName {device_name}), found nothing there after {timeout:.0f}s",
            )
        time.sleep(interval)


def check_filesystem(device: Device, *, full_check: bool = False) -> None:
    """Raise unless ``device`` holds a clean ext4 filesystem; never writes to it."""
    probe = _run(["blkid", "-p", "-o", "value", "-s", "TYPE", device.path])
    found = probe.stdout.strip()
    # blkid exits 2 when it recognises nothing on the device.
    if probe.returncode not in (0, 2):
        raise HostError("FilesystemProbeFailed", f"blkid -p {device.path} failed: {_tail(probe)}")
    if found != EXPECTED_FSTYPE:
        what = f"a {found} filesystem" if found else "no recognizable filesystem"
        raise HostError(
            "UnknownFilesystem",
            f"expected an {EXPECTED_FSTYPE} filesystem on {device.path} ({device.by_id}), found {what}",
        )
    argv = ["e2fsck", "-n", *(["-f"] if full_check else []), device.path]
    fsck = _run(argv)
    if fsck.returncode != 0:
        raise HostError(
            "CorruptFilesystem",
            f"expected a clean ext4 filesystem on {device.path} ({device.by_id}), found errors: "
            f"{' '.join(argv)} exited {fsck.returncode}: {_tail(fsck)}",
        )


def read_mountinfo(path: str = "/proc/self/mountinfo") -> tuple[mountinfo.Mount, ...]:
    return mountinfo.parse(Path(path).read_bytes())


def mount_readonly(device: Device, target: str) -> None:
    """Mount ``device`` read-only at ``target`` (created if missing); the caller checked it is not mounted."""
    os.makedirs(target, exist_ok=True)
    result = _run(["mount", "-t", EXPECTED_FSTYPE, "-o", MOUNT_OPTIONS, device.path, target])
    if result.returncode != 0:
        raise HostError(
            "MountFailed",
            f"expected to mount {device.path} ({device.by_id}) read-only at {target}, "
            f"mount exited {result.returncode}: {_tail(result)}",
        )


def unmount(target: str) -> None:
    """Unmount whatever is mounted at ``target`` (one layer); fails while a host process holds it (a pod's
    bind does not count: see the module docstring)."""
    result = _run(["umount", target])
    if result.returncode != 0:
        raise HostError("UnmountFailed", f"umount {target} exited {result.returncode}: {_tail(result)}")


def unmount_all(mountinfo_path: str, target: str) -> int:
    """Unmount every layer at ``target`` (re-reading the mount table each time), then remove the empty
    mount point; returns how many layers came off."""
    layers = 0
    while mountinfo.mounts_at(read_mountinfo(mountinfo_path), target):
        if layers >= UNMOUNT_LAYERS:
            raise HostError("UnmountFailed", f"{target} is still mounted after {layers} unmounts")
        unmount(target)
        layers += 1
    remove_empty_dir(target)
    return layers


def remove_empty_dir(path: str) -> None:
    """Remove a mount point left empty; a directory that is not empty or is mounted again stays."""
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EBUSY):
            raise


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise HostError("ToolMissing", f"expected {argv[0]} on PATH, found nothing") from None
    except subprocess.TimeoutExpired:
        raise HostError(
            "CommandTimedOut", f"{' '.join(argv)} did not finish within {COMMAND_TIMEOUT:.0f}s"
        ) from None


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    """The program's output on one line; a long one keeps its start (the cause) and its end (the verdict)."""
    lines = (result.stderr + "\n" + result.stdout).splitlines()
    text = " | ".join(line.strip() for line in lines if line.strip())
    if len(text) > _OUTPUT_TAIL:
        half = _OUTPUT_TAIL // 2
        text = f"{text[:half]} ... {text[-half:]}"
    return text or "no output"


def _file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "something that is not a block device"
