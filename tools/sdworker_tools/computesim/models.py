"""The simulator's resources (images, disks, instances, operations) and their JSON rendering.

Plain mutable records guarded by the engine's lock; ``to_json`` renders the compute v1 shape
(``kind``, string-encoded int64 fields, absolute links, optional fields omitted when empty, as the
real API omits them), so the real clients parse them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.errors import OperationFailure
from sdworker_tools.computesim.links import Links

# GCE renders timestamps in US Pacific time with an offset; clients must parse offsets, so do we.
_PACIFIC = datetime.timezone(datetime.timedelta(hours=-7))


def timestamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, _PACIFIC).isoformat(timespec="milliseconds")


ZoneKey = tuple[str, str, str]  # (project, zone, name)
ImageKey = tuple[str, str]  # (project, name)


def queue_key(kind: str, key: ZoneKey | ImageKey) -> str:
    """The name of a resource's operation queue (``disk:project/zone/name``)."""
    return f"{kind}:{'/'.join(key)}"


def _with_optional(out: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    """``out`` plus the optional fields that are set: the real API omits empty ones."""
    out.update((k, v) for k, v in optional.items() if v)
    return out


@dataclass
class Image:
    KIND: ClassVar[str] = "image"
    project: str
    name: str
    id: str
    created: float
    seq: int  # creation order: getFromFamily's "newest"
    status: str = "PENDING"
    family: str | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    disk_size_gb: int = 1
    archive_size_bytes: int = 0
    raw_source: str | None = None
    file: Path | None = None
    deprecated: dict[str, str] | None = None
    # An admin hold (``Engine.hold_image``): not ready in these zones (in every zone, and PENDING, if
    # empty) until released.
    hold: frozenset[str] | None = None

    @property
    def key(self) -> ImageKey:
        return (self.project, self.name)

    @property
    def queue_key(self) -> str:
        return queue_key(self.KIND, self.key)

    @property
    def zone(self) -> None:
        return None  # images are global

    def link(self, links: Links) -> str:
        return links.image(*self.key)

    @property
    def shown_status(self) -> str:
        """What the API reports: a READY image held everywhere is still PENDING."""
        return "PENDING" if self.status == "READY" and self.hold == frozenset() else self.status

    def ready_in(self, zone: str | None) -> bool:
        """Whether a disk may be created from it (in ``zone``; ``None``: anywhere it is shown READY)."""
        return self.shown_status == "READY" and (self.hold is None or zone not in self.hold)

    def is_deprecated(self) -> bool:
        return self.deprecated is not None and self.deprecated.get("state", "ACTIVE") != "ACTIVE"

    def to_json(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            **_resource_json(self, self.shown_status, links),
            "sourceType": "RAW",
            "archiveSizeBytes": str(self.archive_size_bytes),
            "diskSizeGb": str(self.disk_size_gb),
            "storageLocations": ["us"],
            "architecture": "X86_64",
        }
        return _with_optional(
            out,
            {
                "description": self.description,
                "family": self.family,
                "labels": dict(self.labels),
                "rawDisk": {"source": self.raw_source, "containerType": "TAR"} if self.raw_source else None,
                "deprecated": dict(self.deprecated or {}),
            },
        )


@dataclass
class AttachedDisk:
    disk: ZoneKey
    device_name: str
    mode: str
    auto_delete: bool
    index: int
    boot: bool = False
    pending: bool = True  # accepted, its attach operation not DONE yet
    detaching: bool = False
    loop: str | None = None

    def to_json(self, links: Links, size_gb: int) -> dict[str, Any]:
        return {
            "kind": "compute#attachedDisk",
            "type": "PERSISTENT",
            "mode": self.mode,
            "source": links.disk(*self.disk),
            "deviceName": self.device_name,
            "index": self.index,
            "boot": self.boot,
            "autoDelete": self.auto_delete,
            "interface": "SCSI",
            "diskSizeGb": str(size_gb),
        }


@dataclass
class Zonal:
    """What disks and instances share: identity, the zone, their operation queue and self link."""

    KIND: ClassVar[str]  # the collection's singular: "disk", "instance"
    project: str
    zone: str
    name: str
    id: str
    created: float

    @property
    def key(self) -> ZoneKey:
        return (self.project, self.zone, self.name)

    @property
    def queue_key(self) -> str:
        return queue_key(self.KIND, self.key)

    def link(self, links: Links) -> str:
        link: str = getattr(links, self.KIND)(*self.key)
        return link


@dataclass
class Disk(Zonal):
    KIND: ClassVar[str] = "disk"
    size_gb: int
    type_name: str
    status: str = "CREATING"
    access_mode: str | None = None  # Hyperdisk only (see ``access``); Persistent Disk has none
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    source_image: ImageKey | None = None
    source_image_id: str | None = None
    file: Path | None = None
    users: list[ZoneKey] = field(default_factory=list)  # instances, attach DONE
    last_attach: float | None = None
    last_detach: float | None = None

    def to_json(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            **_resource_json(self, self.status, links),
            "sizeGb": str(self.size_gb),
            "type": links.disk_type(self.project, self.zone, self.type_name),
            "physicalBlockSizeBytes": "4096",
        }
        if self.source_image is not None:
            out["sourceImage"] = links.image(*self.source_image)
            out["sourceImageId"] = self.source_image_id
        return _with_optional(
            out,
            {
                "description": self.description,
                "accessMode": self.access_mode,
                "labels": dict(self.labels),
                "users": [links.instance(*user) for user in self.users],
                "lastAttachTimestamp": timestamp(self.last_attach) if self.last_attach is not None else None,
                "lastDetachTimestamp": timestamp(self.last_detach) if self.last_detach is not None else None,
            },
        )


@dataclass
class Instance(Zonal):
    KIND: ClassVar[str] = "instance"
    machine_type: str
    dev_root: Path
    ip: str
    status: str = "PROVISIONING"
    labels: dict[str, str] = field(default_factory=dict)
    disks: list[AttachedDisk] = field(default_factory=list)

    def attachment(self, device_name: str, *, include_pending: bool = False) -> AttachedDisk | None:
        for attached in self.disks:
            if attached.device_name == device_name and (include_pending or not attached.pending):
                return attached
        return None

    def to_json(self, links: Links, disk_sizes: dict[ZoneKey, int]) -> dict[str, Any]:
        out: dict[str, Any] = {
            **_resource_json(self, self.status, links),
            "machineType": links.machine_type(self.project, self.zone, self.machine_type),
            "networkInterfaces": [
                {
                    "kind": "compute#networkInterface",
                    "name": "nic0",
                    "network": f"{links.project(self.project)}/global/networks/default",
                    "networkIP": self.ip,
                }
            ],
            "disks": [d.to_json(links, disk_sizes.get(d.disk, 0)) for d in self.disks if not d.pending],
        }
        return _with_optional(out, {"labels": dict(self.labels)})


def _resource_json(resource: Image | Disk | Instance, status: str, links: Links) -> dict[str, Any]:
    """The fields every labelled resource renders alike (``kind`` from its collection)."""
    out = {
        "kind": f"compute#{resource.KIND}",
        "id": resource.id,
        "creationTimestamp": timestamp(resource.created),
        "name": resource.name,
        "status": status,
        "selfLink": resource.link(links),
        "labelFingerprint": labelmod.fingerprint(resource.labels),
    }
    if resource.zone is not None:
        out["zone"] = links.zone(resource.project, resource.zone)
    return out


class Identity(TypedDict):
    """A new zonal resource's identity: ``Disk(**identity, ...)``."""

    project: str
    zone: str
    name: str
    id: str
    created: float


@dataclass
class Operation:
    project: str
    zone: str | None  # None: a global operation
    name: str
    id: str
    method: str  # "disks.insert"
    target_link: str
    target_id: str
    inserted: float
    request_id: str | None
    queue_key: str
    resources: tuple[str, ...]
    latency_s: float
    status: str = "PENDING"
    started: float | None = None
    ended: float | None = None
    started_mono: float | None = None
    failure: OperationFailure | None = None

    @property
    def operation_type(self) -> str:
        return self.method.split(".", 1)[1]

    def progress(self, now_mono: float) -> int:
        if self.status == "DONE":
            return 100
        if self.status == "PENDING" or self.started_mono is None or self.latency_s <= 0:
            return 0
        return min(99, int(100 * (now_mono - self.started_mono) / self.latency_s))

    def to_json(self, links: Links, now_mono: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self.id,
            "name": self.name,
            "operationType": self.operation_type,
            "targetLink": self.target_link,
            "targetId": self.target_id,
            "status": self.status,
            "user": "anonymous@computesim.invalid",
            "progress": self.progress(now_mono),
            "insertTime": timestamp(self.inserted),
        }
        if self.zone is not None:
            out["zone"] = links.zone(self.project, self.zone)
            out["selfLink"] = links.zone_operation(self.project, self.zone, self.name)
        else:
            out["selfLink"] = links.global_operation(self.project, self.name)
        _with_optional(
            out,
            {
                "clientOperationId": self.request_id,
                "startTime": timestamp(self.started) if self.started is not None else None,
                "endTime": timestamp(self.ended) if self.ended is not None else None,
            },
        )
        if self.failure is not None and self.status == "DONE":
            out.update(self.failure.fields())
        return out
