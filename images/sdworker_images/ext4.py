"""The ext4 filesystem image: sized, made with ``mkfs.ext4 -d`` (no mount, no root), and made reproducible.

Reproducible means the same tree gives the same bytes on any x86-64 builder with e2fsprogs >= 1.47.0:

* our own ``mke2fs.conf`` (``MKE2FS_CONFIG``) fixes every default the host's /etc/mke2fs.conf would pick
  (features, block and inode size, reserved blocks, hash algorithm, itable zeroing);
* the filesystem UUID and the directory hash seed are derived from the content digest (``-U``, ``hash_seed``);
* ``E2FSPROGS_FAKE_TIME`` fixes the superblock times and every inode mkfs creates;
* ``LC_ALL=C``: mkfs 1.47 populates directories in ``alphasort`` order, which follows the locale;
* mkfs copies each source inode's owner, mtime, atime and ctime (e2fsprogs 1.47.0 has no option to
  override them), so a ``debugfs`` pass sets uid/gid 0 and one fixed time on every inode afterwards; the
  staging copy already carries the fixed mtime/atime (``tree.stage``), so the pass sets only what differs
  (always ctime, which cannot be set on a file, and atime, which mkfs's own reads may have moved);
* the superblock's lifetime-writes counter, which would record how much debugfs wrote, is zeroed.

The filesystem is for a read-only mount: no journal (the agent mounts ``ro,noload``), no reserved blocks,
no extended attributes (``no_copy_xattrs``: a builder's SELinux labels must not leak in), inodes sized to
the tree (``-N``).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from sdworker_content.index import Entry
from sdworker_images import proc
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress

BLOCK: Final = 4096
INODE_SIZE: Final = 256
GIB: Final = 1 << 30
BLOCKS_PER_GROUP: Final = 32768
# Fast symlinks keep targets shorter than this in the inode itself; longer ones take a block.
FAST_SYMLINK_MAX: Final = 59
# Fixed share of the image left free, plus a floor: room for directory growth in mkfs's own allocation
# pattern and for whatever the estimate below misses.
HEADROOM_FRACTION: Final = 0.03
HEADROOM_MIN_BYTES: Final = 64 << 20
RETRIES: Final = 3

MKE2FS_CONF: Final = """\
# Written by sdworker_images: every mkfs.ext4 default pinned, whatever the host's /etc/mke2fs.conf says.
[defaults]
\tbase_features = sparse_super,large_file,filetype,dir_index
\tdefault_mntopts = ^acl,^user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0
\tlazy_itable_init = false
\thash_alg = half_md4

[fs_types]
\text4 = {
\t\tfeatures = extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""


def derived_uuid(digest: str, purpose: str) -> str:
    """A version-4-shaped UUID from the content digest: stable for a digest, different per ``purpose``."""
    raw = hashlib.sha256(f"sdworker:{purpose}:{digest}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=raw, version=4))


def label_for(digest: str) -> str:
    """The filesystem label (16 bytes at most): ``sdw-`` and the first 12 hex digits of the digest."""
    return "sdw-" + digest.removeprefix("sha256:")[:12]


def inode_count(entries: Sequence[Entry]) -> int:
    # Every entry, the content index and its directory, the reserved inodes, and a margin mkfs rounds up.
    return len(entries) + 2 + 11 + 64


def estimate_bytes(entries: Sequence[Entry], extra_file_bytes: int = 0) -> int:
    """Bytes the filesystem needs for ``entries`` (plus files of ``extra_file_bytes``), before headroom."""
    blocks = 0
    dir_bytes: dict[str, int] = {"": 0}
    for entry in entries:
        parent, _, name = entry.path.rpartition("/")
        dir_bytes[parent] = dir_bytes.get(parent, 0) + 8 + (len(name.encode()) + 3) // 4 * 4
        if entry.type == "file":
            data = math.ceil(entry.size / BLOCK)
            # Extents hold at most 32768 blocks; past the four in the inode, leaf blocks hold 340 each.
            extents = math.ceil(data / 32768)
            blocks += data + (math.ceil(extents / 340) if extents > 4 else 0)
        elif entry.type == "symlink" and len(entry.target.encode()) > FAST_SYMLINK_MAX:
            blocks += 1
        elif entry.type == "dir":
            dir_bytes.setdefault(entry.path, 0)
    # A directory is at least one block; big ones are hashed trees whose leaves are about 3/4 full.
    blocks += sum(max(1, math.ceil(size / (BLOCK * 3 // 4))) for size in dir_bytes.values())
    blocks += math.ceil(extra_file_bytes / BLOCK) + 2
    inodes = inode_count(entries)
    blocks += math.ceil(inodes * INODE_SIZE / BLOCK)
    groups = math.ceil(blocks / BLOCKS_PER_GROUP) + 1
    # Per group: block and inode bitmaps, a descriptor share, and (sparse_super) an occasional backup.
    blocks += groups * 3 + 64
    return blocks * BLOCK


def image_size(entries: Sequence[Entry], extra_file_bytes: int = 0) -> int:
    """The disk size in bytes: content plus headroom, rounded up to whole GiB (GCE images are in GB)."""
    need = estimate_bytes(entries, extra_file_bytes)
    need += max(HEADROOM_MIN_BYTES, int(need * HEADROOM_FRACTION))
    return max(1, math.ceil(need / GIB)) * GIB


def _mkfs_env(conf: Path, fixed_time: int) -> dict[str, str]:
    return {
        "MKE2FS_CONFIG": str(conf),
        "E2FSPROGS_FAKE_TIME": str(fixed_time),
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def make_filesystem(
    tree: Path,
    image: Path,
    *,
    size_bytes: int,
    inodes: int,
    digest: str,
    fixed_time: int,
    progress: Progress,
    grow: bool = True,
) -> int:
    """Write an ext4 image of ``tree`` to ``image``; returns its size (grown by 1 GiB steps if ``grow``)."""
    mkfs = proc.require("mkfs.ext4", "e2fsprogs")
    if fixed_time <= 0:
        raise BuildError("the fixed file time must be positive (mke2fs reads 0 as 'use the clock')")
    fs_uuid = derived_uuid(digest, "fs-uuid")
    options = ",".join(
        [
            f"hash_seed={derived_uuid(digest, 'hash-seed')}",
            "root_owner=0:0",
            "nodiscard",
            "no_copy_xattrs",
            "lazy_itable_init=0",
        ]
    )
    with tempfile.TemporaryDirectory(prefix="sdworker-mke2fs-") as scratch:
        conf = Path(scratch) / "mke2fs.conf"
        conf.write_text(MKE2FS_CONF)
        for attempt in range(RETRIES + 1):
            image.unlink(missing_ok=True)
            with image.open("xb") as handle:
                handle.truncate(size_bytes)
            argv = [mkfs, "-q", "-F", "-t", "ext4", "-N", str(inodes), "-U", fs_uuid]
            argv += ["-L", label_for(digest), "-E", options, "-d", str(tree), str(image)]
            try:
                proc.run(
                    argv,
                    env=_mkfs_env(conf, fixed_time),
                    heartbeat=progress.still_running("mkfs.ext4 still running"),
                )
                return size_bytes
            except proc.CommandError as exc:
                full = "Could not allocate block" in str(exc) or "No space left" in str(exc)
                if not (grow and full and attempt < RETRIES):
                    image.unlink(missing_ok=True)
                    if full:
                        raise BuildError(
                            f"the tree does not fit in {size_bytes // GIB} GiB: raise --size-gb ({exc})"
                        ) from exc
                    raise
                size_bytes += GIB
                progress.note(f"tree did not fit; retrying with {size_bytes // GIB} GiB")
    raise AssertionError("unreachable")


def normalize_inodes(
    image: Path, paths: Iterable[str], *, fixed_time: int, progress: Progress, tree: Path | None = None
) -> None:
    """Set owner 0:0 and ``fixed_time`` as atime, mtime and ctime on every path (and the root).

    mkfs.ext4 copied each inode's owner, mtime, atime and ctime from ``tree`` (the directory it read), so
    with ``tree`` given only what differs there is set: ctime and atime always (ctime cannot be set on the
    source, and mkfs's own reads may have moved atime since it looked), owner and mtime only where the
    source's differ. Fewer debugfs commands, same image.
    """
    debugfs = proc.require("debugfs", "e2fsprogs")
    fixed_ns = fixed_time * 1_000_000_000
    with tempfile.NamedTemporaryFile("w", prefix="sdworker-debugfs-", suffix=".cmds") as script:
        for path in ["", "lost+found", *paths]:
            # Paths are checked to hold no '"' or '\\' (spec.builder_path_problem), so quoting is enough.
            quoted = f'"/{path}"'
            fields = [
                "uid 0",
                "gid 0",
                f"atime @{fixed_time}",
                f"mtime @{fixed_time}",
                f"ctime @{fixed_time}",
            ]
            if tree is not None and path not in ("", "lost+found"):
                st = os.lstat(tree / path)
                settled = {"uid 0": st.st_uid == 0, "gid 0": st.st_gid == 0}
                settled[f"mtime @{fixed_time}"] = st.st_mtime_ns == fixed_ns
                fields = [field for field in fields if not settled.get(field, False)]
            for field in fields:
                script.write(f"sif {quoted} {field}\n")
        # The superblock counts the kilobytes ever written to the filesystem, mkfs's and debugfs's, so it
        # would record how many commands ran here; 0 stops the count (ext2fs only adds to a non-zero one).
        script.write("ssv kbytes_written 0\n")
        script.flush()
        result = proc.run(
            [debugfs, "-w", "-f", script.name, str(image)],
            env={"E2FSPROGS_FAKE_TIME": str(fixed_time), "LC_ALL": "C", "TZ": "UTC"},
            heartbeat=progress.still_running("debugfs still running"),
        )
    # debugfs exits 0 even when a command fails; its complaints are on stderr after the banner.
    complaints = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("debugfs ") and not line.startswith("debugfs:")
    ]
    if complaints:
        raise BuildError(f"debugfs could not normalise {image.name}: {'; '.join(complaints[:5])}")


def check_filesystem(image: Path) -> None:
    """``e2fsck -fn``: read-only, forced full check; a builder bug must not ship as a corrupt disk."""
    e2fsck = proc.require("e2fsck", "e2fsprogs")
    result = proc.run([e2fsck, "-f", "-n", str(image)], check=False, env={"LC_ALL": "C"})
    if result.returncode != 0:
        raise BuildError(f"e2fsck found problems in {image.name}: {result.stdout.strip()[-2000:]}")
