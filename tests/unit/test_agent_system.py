"""The host layer with the real tools on image files: device lookup by id, blkid + e2fsck verdicts.

No root and no loop devices are needed: blkid and e2fsck read image files as they read block devices.
Mounting is exercised with real loop devices in ``tests/integration/test_agent_node.py``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sdworker_agent import system

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mkfs.ext4", "blkid", "e2fsck")), reason="e2fsprogs/blkid missing"
)


def image(tmp_path: Path, name: str = "disk.img", size_mb: int = 16) -> Path:
    tree = tmp_path / f"{name}.tree"
    (tree / ".sdworker").mkdir(parents=True)
    (tree / "model.safetensors").write_bytes(os.urandom(256 * 1024))
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(path)], check=True)
    return path


def as_device(path: Path) -> system.Device:
    return system.Device(by_id=str(path), path=str(path), major=0, minor=0)


def test_a_clean_ext4_image_passes(tmp_path: Path) -> None:
    system.check_filesystem(as_device(image(tmp_path)))
    system.check_filesystem(as_device(image(tmp_path, "b.img")), full_check=True)


def test_no_filesystem_is_reported_as_unknown(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * 1024 * 1024)
    with pytest.raises(system.HostError) as caught:
        system.check_filesystem(as_device(blank))
    assert caught.value.reason == "UnknownFilesystem"
    assert "expected an ext4 filesystem" in caught.value.message
    assert "found no recognizable filesystem" in caught.value.message


def test_another_filesystem_is_named(tmp_path: Path) -> None:
    if not shutil.which("mkfs.vfat") and not shutil.which("mkswap"):
        pytest.skip("no second mkfs")
    other = tmp_path / "other.img"
    other.write_bytes(b"\0" * 4 * 1024 * 1024)
    if shutil.which("mkswap"):
        subprocess.run(["mkswap", str(other)], check=True, capture_output=True)
        found = "swap"
    else:
        subprocess.run(["mkfs.vfat", str(other)], check=True, capture_output=True)
        found = "vfat"
    with pytest.raises(system.HostError) as caught:
        system.check_filesystem(as_device(other))
    assert caught.value.reason == "UnknownFilesystem"
    assert f"found a {found} filesystem" in caught.value.message


def test_a_corrupt_group_descriptor_table_is_caught_without_a_forced_check(tmp_path: Path) -> None:
    path = image(tmp_path)
    with path.open("r+b") as f:  # 1 KiB blocks: block 0 boot, 1 superblock, 2 the group descriptors
        f.seek(2048)
        f.write(os.urandom(1024))
    with pytest.raises(system.HostError) as caught:
        system.check_filesystem(as_device(path))
    assert caught.value.reason == "CorruptFilesystem"
    assert "expected a clean ext4 filesystem" in caught.value.message
    assert "e2fsck -n" in caught.value.message
    assert "exited 4" in caught.value.message


def test_device_lookup_by_id(tmp_path: Path) -> None:
    by_id = tmp_path / "disk" / "by-id"
    by_id.mkdir(parents=True)
    assert system.find_device(str(tmp_path), "sdw-missing") is None
    (by_id / "google-file").symlink_to(image(tmp_path))
    with pytest.raises(system.HostError) as caught:
        system.find_device(str(tmp_path), "file")
    assert caught.value.reason == "NotABlockDevice"
    assert "found a regular file" in caught.value.message
    block = next((p for p in sorted(Path("/dev").glob("loop[0-9]*")) if stat.S_ISBLK(p.stat().st_mode)), None)
    if block is None:
        pytest.skip("no block device to point at")
    (by_id / "google-real").symlink_to(block)
    device = system.find_device(str(tmp_path), "real")
    assert device is not None
    assert device.path == str(block)
    assert device.number == (os.major(block.stat().st_rdev), os.minor(block.stat().st_rdev))


def test_waiting_for_a_device_that_never_comes_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(system.HostError) as caught:
        system.wait_for_device(str(tmp_path), "sdw-x", timeout=0.3, interval=0.05)
    assert caught.value.reason == "DeviceNotFound"
    assert f"{tmp_path}/disk/by-id/google-sdw-x" in caught.value.message
    with pytest.raises(system.HostError, match="Aborted"):
        system.wait_for_device(str(tmp_path), "sdw-x", timeout=30, should_stop=lambda: True)


def test_a_missing_tool_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(system.HostError) as caught:
        system.check_filesystem(as_device(tmp_path))
    assert caught.value.reason == "ToolMissing"
