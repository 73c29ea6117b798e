"""Parse ``/proc/self/mountinfo``: the agent's only source of truth for what is mounted.

The agent must never mount a runtime twice and must find its own mounts again after a restart, so it
reads the kernel's table instead of remembering anything. ``/proc/self/mountinfo`` (proc(5)) is used rather
than ``/proc/mounts`` because it carries the device number (``major:minor``) of each mount, which is how the
agent tells "the right disk is mounted here" from "something else is mounted here". The kernel escapes
space, tab, newline and backslash in paths as three-digit octal (``\\040``); this module undoes that and
works on bytes, because mount points need not be UTF-8. Pure (no ``os``): the caller reads the file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

_OCTAL_ESCAPE: Final = re.compile(rb"\\([0-7]{3})")
# mount ID, parent ID, major:minor, root, mount point, options: always present before the optional fields.
_FIXED_FIELDS: Final = 6


class MountinfoError(ValueError):
    """A line of mountinfo does not have the shape proc(5) documents."""


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def device(self) -> tuple[int, int]:
        return (self.major, self.minor)


def unescape(field: bytes) -> str:
    """Undo the kernel's octal escapes and decode as Linux ``os.fsdecode`` does (odd bytes survive)."""
    return _decode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_line(line: bytes) -> Mount:
    fields = line.split(b" ")
    try:
        separator = fields.index(b"-", _FIXED_FIELDS)
    except ValueError:
        raise MountinfoError(f"no ' - ' separator in mountinfo line {line!r}") from None
    if len(fields) < separator + 4:
        raise MountinfoError(f"mountinfo line has too few fields after ' - ': {line!r}")
    try:
        mount_id, parent_id = int(fields[0]), int(fields[1])
        major_text, minor_text = fields[2].split(b":")
        major, minor = int(major_text), int(minor_text)
    except ValueError:
        raise MountinfoError(f"bad id or major:minor in mountinfo line {line!r}") from None
    return Mount(
        mount_id=mount_id,
        parent_id=parent_id,
        major=major,
        minor=minor,
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(_decode(fields[5]).split(",")),
        optional=tuple(_decode(f) for f in fields[_FIXED_FIELDS:separator]),
        fstype=unescape(fields[separator + 1]),
        source=unescape(fields[separator + 2]),
        super_options=tuple(unescape(fields[separator + 3]).split(",")),
    )


def parse(text: bytes) -> tuple[Mount, ...]:
    """Every mount in a mountinfo text, in the kernel's order (a mount stacked on another comes later)."""
    return tuple(parse_line(line) for line in text.split(b"\n") if line.strip())


def mounts_at(mounts: Iterable[Mount], path: str) -> tuple[Mount, ...]:
    """The mounts whose mount point is exactly ``path`` (more than one means mounts are stacked there)."""
    wanted = posixpath.normpath(path)
    return tuple(m for m in mounts if m.mount_point == wanted)


def mounts_below(mounts: Iterable[Mount], directory: str) -> tuple[Mount, ...]:
    """The mounts whose mount point is a direct child of ``directory``."""
    parent = posixpath.normpath(directory)
    return tuple(m for m in mounts if posixpath.dirname(m.mount_point) == parent and m.mount_point != parent)
