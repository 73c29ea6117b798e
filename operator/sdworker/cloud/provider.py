"""What the controller needs from a cloud, as a Protocol, and the values that cross it.

Every mutation is idempotent by contract: "check, act with a deterministic request id, wait for the
operation, verify", where already-done counts as success (the disk exists from our image, the disk is
already attached, a 404 on delete or detach). That is what makes operator restarts at any point safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sdworker.api.types import ResolvedImage

# Labels on every disk we create (GCE label keys/values: lowercase, <= 63 chars).
LABEL_MANAGED = "sdworker-managed"
LABEL_CLUSTER = "sdworker-cluster"
LABEL_NODE = "sdworker-node"
LABEL_RUNTIME = "sdworker-runtime"
LABEL_POOL = "sdworker-pool"

# How many cloud calls may be in flight at once (``--cloud-threads``). The client is blocking, so each call
# runs in a thread, and an operation's wait (``zoneOperations.wait``, a long poll of up to 2 minutes) holds
# its thread until the operation is done: the thread count caps the disk operations in flight. asyncio's
# default executor has min(32, CPUs + 4) threads, 6 on a 2-CPU node, which made a burst of 10 nodes' disk
# creates queue behind the first 6 (bench pernode-10, realistic: the 10th insert sent 24 s late). With a
# regional quota of 25 writes/s and disk creates of 6-30 s, hundreds may be in flight; an idle thread costs
# a few tens of KB.
CLOUD_THREADS = 128

# An image's own labels and description are sdworker.image_meta's.


@dataclass(frozen=True)
class DiskRequest:
    project: str
    zone: str
    name: str
    source_image: str  # projects/P/global/images/NAME (concrete, never a family)
    disk_type: str  # pd-balanced, ...
    size_gb: int
    labels: Mapping[str, str] = field(default_factory=dict)
    # Attached READ_ONLY to many instances (SharedReadOnly): a Hyperdisk then needs its access mode set.
    read_only_many: bool = False


@dataclass(frozen=True)
class AttachRequest:
    project: str
    zone: str
    instance: str
    disk: str
    device_name: str  # /dev/disk/by-id/google-<device_name> on the node
    read_only: bool
    auto_delete: bool  # the disk dies with the VM


@dataclass(frozen=True)
class Disk:
    project: str
    zone: str
    name: str
    status: str  # CREATING | READY | ...
    source_image: str  # as the API returns it (a URL); compare with image_matches()
    size_gb: int
    labels: Mapping[str, str]
    label_fingerprint: str
    users: tuple[str, ...]  # instance names the disk is attached to


def image_matches(source_image: str, image: str) -> bool:
    """Whether an API ``sourceImage`` URL names ``projects/P/global/images/NAME``."""
    return source_image.rstrip("/").endswith(image.rstrip("/"))


class CloudProvider(Protocol):
    async def resolve_image(self, image: str) -> ResolvedImage: ...

    async def get_disk(self, project: str, zone: str, name: str) -> Disk | None: ...

    async def ensure_disk(self, request: DiskRequest, *, idempotency_key: str) -> Disk: ...

    async def ensure_attached(self, request: AttachRequest, *, idempotency_key: str) -> None: ...

    async def ensure_detached(
        self, project: str, zone: str, instance: str, device_name: str, *, idempotency_key: str
    ) -> None: ...

    async def ensure_deleted(self, project: str, zone: str, name: str, *, idempotency_key: str) -> None: ...

    async def list_disks(self, project: str, zone: str, labels: Mapping[str, str]) -> list[Disk]: ...

    async def list_disks_everywhere(self, project: str, labels: Mapping[str, str]) -> list[Disk]: ...

    async def set_labels(
        self, project: str, zone: str, name: str, labels: Mapping[str, str], fingerprint: str
    ) -> None: ...

    async def instance_exists(self, project: str, zone: str, instance: str) -> bool: ...

    async def close(self) -> None: ...
