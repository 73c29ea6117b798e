"""Sizing and identity of the ext4 image: whole GiB with headroom, names and UUIDs fixed by the digest.

The mkfs/debugfs/tar steps themselves run against real e2fsprogs in tests/integration/test_images_build.py.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sdworker_content.index import Entry
from sdworker_images import ext4, proc, tree
from sdworker_images.progress import Progress

GIB = 1 << 30
FIXED = 946684800
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _files(count: int, size: int) -> list[Entry]:
    return [Entry(f"d/f{i}", "file", size=size, sha256="0" * 64) for i in range(count)] + [Entry("d", "dir")]


@pytest.mark.parametrize(
    ("entries", "gib"),
    [
        ([], 1),
        (_files(10, 1000), 1),
        (_files(1, 900 << 20), 1),
        (_files(1, 1000 << 20), 2),  # 1000 MiB of data + headroom no longer fits in 1 GiB
        (_files(1, 4 * GIB), 5),
        (_files(50_000, 10_000), 1),  # 50k small files: 200 MiB of blocks, 12 MiB of inodes
    ],
    ids=["empty", "tiny", "900MiB", "1000MiB", "4GiB", "50k-files"],
)
def test_image_size_is_content_plus_headroom_in_whole_gib(entries: list[Entry], gib: int) -> None:
    size = ext4.image_size(entries)
    assert size == gib * GIB
    assert size >= ext4.estimate_bytes(entries) + ext4.HEADROOM_MIN_BYTES


def test_small_files_cost_whole_blocks() -> None:
    one_byte = ext4.estimate_bytes(_files(1000, 1))
    empty = ext4.estimate_bytes(_files(1000, 0))
    assert one_byte - empty == 1000 * ext4.BLOCK


def test_long_symlinks_take_a_block_and_short_ones_do_not() -> None:
    short = ext4.estimate_bytes([Entry("l", "symlink", target="x" * 59)])
    long = ext4.estimate_bytes([Entry("l", "symlink", target="x" * 60)])
    assert long - short == ext4.BLOCK


def test_uuids_and_label_come_from_the_digest() -> None:
    fs_uuid = ext4.derived_uuid(DIGEST, "fs-uuid")
    assert fs_uuid == ext4.derived_uuid(DIGEST, "fs-uuid")
    assert fs_uuid != ext4.derived_uuid(DIGEST, "hash-seed")
    assert fs_uuid != ext4.derived_uuid("sha256:" + "f" * 64, "fs-uuid")
    assert uuid.UUID(fs_uuid).version == 4
    assert ext4.label_for(DIGEST) == "sdw-0123456789ab"
    assert len(ext4.label_for(DIGEST)) <= 16


def test_inode_count_covers_every_entry_and_the_content_index() -> None:
    entries = _files(100, 1)
    assert ext4.inode_count(entries) >= len(entries) + 2 + 11


def test_the_pinned_mke2fs_config_makes_a_read_only_friendly_filesystem() -> None:
    conf = ext4.MKE2FS_CONF
    assert "has_journal" not in conf
    assert "ext_attr" not in conf
    assert "resize_inode" not in conf
    assert "reserved_ratio = 0" in conf
    assert "lazy_itable_init = false" in conf
    assert "metadata_csum" in conf
    assert "extent" in conf


def _image(stage: Path, image: Path, *, tree: Path | None) -> bytes:
    entries = [
        Entry(str(p.relative_to(stage)), "dir" if p.is_dir() else "file", size=p.stat().st_size)
        for p in sorted(stage.rglob("*"))
    ]
    progress = Progress(quiet=True)
    image.parent.mkdir()
    ext4.make_filesystem(
        stage,
        image,
        size_bytes=GIB,
        inodes=ext4.inode_count(entries),
        digest=DIGEST,
        fixed_time=FIXED,
        progress=progress,
    )
    ext4.normalize_inodes(image, [e.path for e in entries], fixed_time=FIXED, progress=progress, tree=tree)
    return image.read_bytes()


def test_normalising_only_what_differs_gives_the_same_image(tmp_path: Path) -> None:
    # With the staged tree at hand, normalize_inodes skips what mkfs already copied right (owner, mtime);
    # the image must come out byte for byte as when every field of every inode is set.
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    for i in range(30):
        (source / "pkg" / f"m{i}.py").write_bytes(b"x" * i * 1000)
    stage = tmp_path / "stage"
    stage.mkdir()
    tree.stage(tree.scan(source), stage, fixed_time=FIXED)
    (stage / "late.json").write_text("{}")  # written after staging, like the content index: times are "now"
    if os.geteuid() == 0:
        os.chown(stage / "pkg" / "m3.py", 1000, 1000, follow_symlinks=False)  # an owner to set back to 0
    every_field = _image(stage, tmp_path / "a" / "disk.raw", tree=None)
    only_differences = _image(stage, tmp_path / "b" / "disk.raw", tree=stage)
    assert every_field == only_differences
    listing = proc.run(
        [proc.require("debugfs", "e2fsprogs"), "-R", "stat /late.json", str(tmp_path / "b" / "disk.raw")]
    )
    assert "User:     0   Group:     0" in listing.stdout
    assert "mtime: 0x386d4380" in listing.stdout, "2000-01-01T00:00:00Z"
