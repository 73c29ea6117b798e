"""Sizing and identity of the ext4 image: whole GiB with headroom, names and UUIDs fixed by the digest.

The mkfs/debugfs/tar steps themselves run against real e2fsprogs in tests/integration/test_images_build.py.
"""

from __future__ import annotations

import uuid

import pytest

from sdworker.manifest import Entry
from sdworker_images import ext4

GIB = 1 << 30
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


def test_inode_count_covers_every_entry_and_the_manifest() -> None:
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
