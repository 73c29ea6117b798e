"""The simulator's resources (images, disks, instances, operations) and their JSON rendering.

Plain mutable records guarded by the engine's lock; ``to_json`` renders the compute v1 shape
(``kind``, string-encoded int64 fields, absolute links, optional fields omitted when empty, as the
real API omits them), so the real clients parse them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.errors import OperationFailure
from sdworker_tools.computesim.links import Links

# GCE renders timestamps in US Pacific time with an offset; clients must parse offsets, so do we.
_PACIFIC = datetime.timezone(datetime.timedelta(hours=-7))


def timestamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, _PACIFIC).isoformat(timespec="milliseconds")


ZoneKey = tuple[str, str, str]  # (project, zone, name)
ImageKey = tuple[str, str]  # (project, name)


@dataclass
class Image:
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

    @property
    def key(self) -> ImageKey:
        return (self.project, self.name)

    def is_deprecated(self) -> bool:
        return self.deprecated is not None and self.deprecated.get("state", "ACTIVE") != "ACTIVE"

    def to_json(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#image",
            "id": self.id,
            "creationTimestamp": timestamp(self.created),
            "name": self.name,
            "sourceType": "RAW",
            "status": self.status,
            "archiveSizeBytes": str(self.archive_size_bytes),
            "diskSizeGb": str(self.disk_size_gb),
            "labelFingerprint": labelmod.fingerprint(self.labels),
            "selfLink": links.image(self.project, self.name),
            "storageLocations": ["us"],
            "architecture": "X86_64",
        }
        if self.description:
            out["description"] = self.description
        if self.family:
            out["family"] = self.family
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.raw_source:
            out["rawDisk"] = {"source": self.raw_source, "containerType": "TAR"}
        if self.deprecated:
            out["deprecated"] = dict(self.deprecated)
        return out


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
class Disk:
    project: str
    zone: str
    name: str
    id: str
    created: float
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

    @property
    def key(self) -> ZoneKey:
        return (self.project, self.zone, self.name)

    def to_json(self, links: Links) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#disk",
            "id": self.id,
            "creationTimestamp": timestamp(self.created),
            "name": self.name,
            "sizeGb": str(self.size_gb),
            "zone": links.zone(self.project, self.zone),
            "status": self.status,
            "selfLink": links.disk(*self.key),
            "type": links.disk_type(self.project, self.zone, self.type_name),
            "labelFingerprint": labelmod.fingerprint(self.labels),
            "physicalBlockSizeBytes": "4096",
        }
        if self.description:
            out["description"] = self.description
        if self.access_mode is not None:
            out["accessMode"] = self.access_mode
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.source_image is not None:
            out["sourceImage"] = links.image(*self.source_image)
            out["sourceImageId"] = self.source_image_id
        if self.users:
            out["users"] = [links.instance(*user) for user in self.users]
        if self.last_attach is not None:
            out["lastAttachTimestamp"] = timestamp(self.last_attach)
        if self.last_detach is not None:
            out["lastDetachTimestamp"] = timestamp(self.last_detach)
        return out


@dataclass
class Instance:
    project: str
    zone: str
    name: str
    id: str
    created: float
    machine_type: str
    dev_root: Path
    ip: str
    status: str = "PROVISIONING"
    labels: dict[str, str] = field(default_factory=dict)
    disks: list[AttachedDisk] = field(default_factory=list)

    @property
    def key(self) -> ZoneKey:
        return (self.project, self.zone, self.name)

    def attachment(self, device_name: str, *, include_pending: bool = False) -> AttachedDisk | None:
        for attached in self.disks:
            if attached.device_name == device_name and (include_pending or not attached.pending):
                return attached
        return None

    def to_json(self, links: Links, disk_sizes: dict[ZoneKey, int]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "compute#instance",
            "id": self.id,
            "creationTimestamp": timestamp(self.created),
            "name": self.name,
            "machineType": links.machine_type(self.project, self.zone, self.machine_type),
            "status": self.status,
            "zone": links.zone(self.project, self.zone),
            "selfLink": links.instance(*self.key),
            "labelFingerprint": labelmod.fingerprint(self.labels),
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
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


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
        if self.request_id:
            out["clientOperationId"] = self.request_id
        if self.started is not None:
            out["startTime"] = timestamp(self.started)
        if self.ended is not None:
            out["endTime"] = timestamp(self.ended)
        if self.failure is not None and self.status == "DONE":
            out.update(self.failure.fields())
        return out
