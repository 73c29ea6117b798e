"""The agent reads the kernel's mount table exactly: escaped paths, optional fields, stacked mounts."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdworker_agent import mountinfo

# From proc(5), plus lines shaped like a container's view of a runtime mount.
SAMPLE = b"""\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
22 27 0:21 / /proc rw,relatime - proc proc rw
571 560 7:3 / /host/mnt/sdworker/sd-runtime-v3-0a1b2c3d ro,relatime shared:300 master:12 - ext4 /dev/loop3 ro
600 571 7:4 / /tmp/with\\040space/and\\011tab\\134back ro - ext4 /dev/loop4 ro,norecovery
601 571 0:55 / /tmp/no/optional rw - tmpfs none rw,size=1024k
"""


def test_every_field_of_a_documented_line_is_parsed() -> None:
    m = mountinfo.parse(SAMPLE)[0]
    assert (m.mount_id, m.parent_id, m.major, m.minor) == (36, 35, 98, 0)
    assert (m.root, m.mount_point, m.options) == ("/mnt1", "/mnt2", ("rw", "noatime"))
    assert m.optional == ("master:1",)
    assert (m.fstype, m.source, m.super_options) == ("ext3", "/dev/root", ("rw", "errors=continue"))
    assert not m.read_only


def test_several_optional_fields_and_read_only() -> None:
    m = mountinfo.parse(SAMPLE)[2]
    assert m.optional == ("shared:300", "master:12")
    assert m.mount_point == "/host/mnt/sdworker/sd-runtime-v3-0a1b2c3d"
    assert m.device == (7, 3)
    assert m.read_only


def test_octal_escapes_in_mount_points_are_decoded() -> None:
    assert mountinfo.parse(SAMPLE)[3].mount_point == "/tmp/with space/and\ttab\\back"


def test_no_optional_fields() -> None:
    m = mountinfo.parse(SAMPLE)[4]
    assert (m.optional, m.fstype, m.source) == ((), "tmpfs", "none")


@pytest.mark.parametrize(
    "line",
    [
        b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw",  # no separator
        b"36 35 98:0 /mnt1 /mnt2 rw - ext3",  # too few fields after it
        b"x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw",  # bad id
        b"36 35 98-0 /mnt1 /mnt2 rw - ext3 /dev/root rw",  # bad major:minor
    ],
)
def test_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(mountinfo.MountinfoError):
        mountinfo.parse_line(line)


def test_stacked_mounts_are_all_found_at_their_mount_point() -> None:
    text = SAMPLE + b"700 571 7:3 / /host/mnt/sdworker/sd-runtime-v3-0a1b2c3d ro - ext4 /dev/loop3 ro\n"
    here = mountinfo.mounts_at(mountinfo.parse(text), "/host/mnt/sdworker/sd-runtime-v3-0a1b2c3d/")
    assert [m.mount_id for m in here] == [571, 700]


def test_mounts_below_is_direct_children_only() -> None:
    text = SAMPLE + b"701 571 7:5 / /host/mnt/sdworker/a/nested ro - ext4 /dev/loop5 ro\n"
    below = mountinfo.mounts_below(mountinfo.parse(text), "/host/mnt/sdworker")
    assert [m.mount_point for m in below] == ["/host/mnt/sdworker/sd-runtime-v3-0a1b2c3d"]


def _escape(path: bytes) -> bytes:
    # What the kernel's seq_file mangling does to a path: \, space, tab, newline as octal.
    out = bytearray()
    for byte in path:
        out += b"\\%03o" % byte if byte in b"\\ \t\n" else bytes([byte])
    return bytes(out)


@given(st.binary(min_size=1, max_size=60).filter(lambda b: 0 not in b))
def test_any_path_survives_the_round_trip(raw: bytes) -> None:
    path = b"/" + raw
    line = b"1 2 3:4 / " + _escape(path) + b" rw - ext4 " + _escape(path) + b" rw"
    m = mountinfo.parse_line(line)
    assert m.mount_point == os.fsdecode(path)
    assert m.source == os.fsdecode(path)


def test_this_process_mount_table_parses() -> None:
    with open("/proc/self/mountinfo", "rb") as f:
        mounts = mountinfo.parse(f.read())
    assert any(m.mount_point == "/" for m in mounts)
