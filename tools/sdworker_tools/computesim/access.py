"""Disk access modes (``Disk.accessMode``) and the multi-attach rules GCE enforces with them.

Why: whether a disk can be attached to several instances depends on its type and, for Hyperdisk, on its
access mode; a simulator that let every disk be shared read-only would hide the failure a real project hits
on the second attach. The rules, from the Compute Engine page "Share disks between VMs"
(https://cloud.google.com/compute/docs/disks/sharing-disks-between-vms) and the compute v1 API reference of
``Disk.accessMode``:

- ``accessMode`` is only valid for Hyperdisk types ("The AccessMode is only valid for Hyperdisk disk
  types."); a Hyperdisk created without one is ``READ_WRITE_SINGLE``, attachable to one instance.
- ``READ_ONLY_MANY`` (read-only sharing) is Hyperdisk ML only; ``READ_WRITE_MANY`` (multi-writer) is
  Hyperdisk Balanced (and Balanced High Availability); Hyperdisk Extreme and Throughput take no other
  mode than the default. This is the split the GCE PD CSI driver encodes
  (kubernetes-sigs/gcp-compute-persistent-disk-csi-driver, pkg/gce-pd-csi-driver/controller.go:
  ``disksWithModifiableAccessMode = [hyperdisk-ml]``, ``disksWithUnsettableAccessMode`` =
  hyperdisk-extreme and hyperdisk-throughput, "do not support attaching to multiple VMs"; read-only
  access refused for hyperdisk-balanced-high-availability).
- Persistent Disk needs no access mode: Standard, Balanced and SSD PD attach ``READ_ONLY`` to any number
  of instances, and ``READ_WRITE`` to one (``AttachedDisk.mode``: "Only one virtual machine at a time can
  be attached to a disk in read-write mode"). Extreme PD is not among the page's read-only-sharing types.

Error answers keep GCE's status and ``errors[].reason``: a second attach of a single-instance disk is
400 ``resourceInUseByAnotherResource`` "The disk resource '...' is already being used by '...'" (the
wording the PD CSI driver matches in pkg/common/utils.go ``isUserMultiAttachError``); a read-only attach
of a Hyperdisk type that cannot be read-only is 400 ``badRequest`` "<type> disk type cannot be attached
in read-only mode." (quoted from a real answer in google/cloud-forensics-utils PR #530); an invalid
``accessMode`` at insert is 400 ``invalid`` "Invalid value for field 'resource.accessMode': ...". The
wording of the READ_ONLY_MANY-attached-read-write answer is ours (the status and reason follow the
read-only one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sdworker_tools.computesim import errors
from sdworker_tools.computesim.errors import ApiError

READ_WRITE_SINGLE: Final = "READ_WRITE_SINGLE"
READ_WRITE_MANY: Final = "READ_WRITE_MANY"
READ_ONLY_MANY: Final = "READ_ONLY_MANY"
ACCESS_MODES: Final = (READ_WRITE_SINGLE, READ_WRITE_MANY, READ_ONLY_MANY)

# Hyperdisk type -> the access modes it accepts.
HYPERDISK_MODES: Final[dict[str, frozenset[str]]] = {
    "hyperdisk-ml": frozenset({READ_WRITE_SINGLE, READ_ONLY_MANY}),
    "hyperdisk-balanced": frozenset({READ_WRITE_SINGLE, READ_WRITE_MANY}),
    "hyperdisk-balanced-high-availability": frozenset({READ_WRITE_SINGLE, READ_WRITE_MANY}),
    "hyperdisk-extreme": frozenset({READ_WRITE_SINGLE}),
    "hyperdisk-throughput": frozenset({READ_WRITE_SINGLE}),
}
# Persistent Disk types that may be attached READ_ONLY to several instances.
PD_READ_ONLY_SHARABLE: Final = frozenset({"pd-standard", "pd-balanced", "pd-ssd"})


def is_hyperdisk(disk_type: str) -> bool:
    return disk_type.startswith("hyperdisk-")


def access_mode_for_insert(disk_type: str, requested: object) -> str | None:
    """The access mode a new disk gets: the requested one if its type accepts it, the default otherwise.

    ``None`` for Persistent Disk (no access mode); a 400 for a mode that is unknown, not for this type,
    or set on a Persistent Disk.
    """
    if requested in (None, ""):
        return READ_WRITE_SINGLE if is_hyperdisk(disk_type) else None
    if requested not in ACCESS_MODES:
        raise errors.invalid_field(
            "resource.accessMode", requested, f"Must be one of {', '.join(ACCESS_MODES)}."
        )
    if not is_hyperdisk(disk_type):
        raise errors.invalid_field(
            "resource.accessMode",
            requested,
            f"Access mode is only supported for Hyperdisk, not '{disk_type}'.",
        )
    mode = str(requested)
    if mode not in HYPERDISK_MODES.get(disk_type, frozenset({READ_WRITE_SINGLE})):
        raise errors.invalid_field(
            "resource.accessMode", mode, f"Access mode {mode} is not supported for disk type '{disk_type}'."
        )
    return mode


def check_attach(
    *,
    disk_path: str,
    disk_type: str,
    access_mode: str | None,
    attach_mode: str,
    others: Iterable[tuple[str, str]],
) -> None:
    """Raise GCE's answer if ``disk_path`` cannot be attached in ``attach_mode`` (``READ_WRITE`` or
    ``READ_ONLY``) next to its current attachments ``others`` (instance path, attach mode; pending ones
    included, the same instance included)."""
    read_only = attach_mode == "READ_ONLY"
    if is_hyperdisk(disk_type):
        mode = access_mode or READ_WRITE_SINGLE
        if read_only and READ_ONLY_MANY not in HYPERDISK_MODES.get(disk_type, frozenset()):
            raise ApiError(400, "badRequest", f"{disk_type} disk type cannot be attached in read-only mode.")
        if not read_only and mode == READ_ONLY_MANY:
            raise ApiError(
                400,
                "badRequest",
                f"The disk resource '{disk_path}' has access mode READ_ONLY_MANY and cannot be attached in "
                "read-write mode.",
            )
        users = [user for user, _ in others]
        if users and mode == READ_WRITE_SINGLE:
            raise errors.in_use(disk_path, users[0])
        return
    for user, other_mode in others:
        if not read_only or other_mode == "READ_WRITE" or disk_type not in PD_READ_ONLY_SHARABLE:
            raise errors.in_use(disk_path, user)
