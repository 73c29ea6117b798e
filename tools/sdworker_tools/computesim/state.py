"""The simulator's state: the project's resources, operations, queues, faults and logs, and lookups into them.

One lock guards it all (``_lock``; ``_changed`` wakes operation waits). The call pipeline and the life of
an operation (``core``) and every resource's handlers build on this class; lookups raise the real API's
``notFound`` (or ``invalid`` for an unknown zone).
"""

from __future__ import annotations

import collections
import itertools
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import blockdev, errors
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.errors import OperationFailure
from sdworker_tools.computesim.idempotency import RequestIdCache
from sdworker_tools.computesim.latency import LatencyProfile, profile
from sdworker_tools.computesim.links import Links
from sdworker_tools.computesim.models import (
    AttachedDisk,
    Disk,
    Identity,
    Image,
    ImageKey,
    Instance,
    Operation,
    ZoneKey,
)
from sdworker_tools.computesim.quota import RegionalQuota
from sdworker_tools.computesim.scheduler import Scheduler

GIB = blockdev.GIB
NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'"


@dataclass
class Call:
    """One API request, as the handlers see it."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]
    request_id: str | None = None

    @property
    def project(self) -> str:
        return self.params["project"]


@dataclass
class Work:
    """What an accepted operation does when it finishes (``effect``), or undoes if it fails (``abort``)."""

    effect: Callable[[], None]
    abort: Callable[[OperationFailure], None] | None
    injected: OperationFailure | None


@dataclass
class LogEntry:
    seq: int
    t: float  # seconds since the simulator started (monotonic)
    method: str
    path: str
    status: int
    write: bool
    reason: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None
    replayed: bool = False
    operation: str | None = None
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "t": round(self.t, 6),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "write": self.write,
            "reason": self.reason,
            "query": self.query,
            "requestId": self.request_id,
            "replayed": self.replayed,
            "operation": self.operation,
            "fault": self.fault,
        }


class State:
    """The simulated project and the machinery every handler shares. Guarded by ``_lock``."""

    def __init__(self, config: SimConfig, links: Links, state_dir: Path, dev_base: Path) -> None:
        self.links = links
        self.state_dir = state_dir
        self.dev_base = dev_base
        self._config = config
        self._profile: LatencyProfile = profile(config.latency).with_overrides(config.latency_overrides)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._rng = random.Random(config.seed)
        self._write_quota = RegionalQuota(config.write_quota_per_s, config.write_quota_burst)
        self._read_quota = RegionalQuota(config.read_quota_per_s)
        self._request_ids: RequestIdCache[Operation] = RequestIdCache()
        self._images: dict[ImageKey, Image] = {}
        self._disks: dict[ZoneKey, Disk] = {}
        self._instances: dict[ZoneKey, Instance] = {}
        self._ops: dict[tuple[str, str, str], Operation] = {}
        self._op_log: list[Operation] = []
        self._work: dict[str, Work] = {}
        self._queues: dict[str, collections.deque[Operation]] = {}
        self._pending: collections.Counter[str] = collections.Counter()
        self._warm: set[tuple[ImageKey, str]] = set()
        self._faults: list[FaultRule] = []
        self._requests: list[LogEntry] = []
        self._seq = itertools.count(1)  # image creation order
        self._request_seq = itertools.count(1)
        self._ips = itertools.count(2)
        self._t0 = time.monotonic()
        self._stopping = False
        self._scheduler = Scheduler()

    # ------------------------------------------------------------------ ids and lookups (lock held)

    def _new_id(self) -> str:
        return str(self._rng.getrandbits(62) | (1 << 62))

    def _identity(self, project: str, zone: str, name: str) -> Identity:
        """A new zonal resource's identity: a fresh id, created now."""
        return Identity(project=project, zone=zone, name=name, id=self._new_id(), created=time.time())

    def _known_zone(self, call: Call) -> str:
        zone = call.params.get("zone", "")
        if zone and zone not in self._config.zones:
            raise errors.invalid_field("zone", zone, "Unknown zone.")
        return zone

    def _image(self, project: str, name: str) -> Image:
        image = self._images.get((project, name))
        if image is None:
            raise errors.not_found(f"projects/{project}/global/images/{name}")
        return image

    def _disk(self, project: str, zone: str, name: str) -> Disk:
        disk = self._disks.get((project, zone, name))
        if disk is None:
            raise errors.not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return disk

    def _instance(self, project: str, zone: str, name: str) -> Instance:
        inst = self._instances.get((project, zone, name))
        if inst is None:
            raise errors.not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return inst

    def _disk_of(self, call: Call, param: str = "disk") -> Disk:
        """The disk a zonal call names (``param``), in a known zone."""
        return self._disk(call.project, self._known_zone(call), call.params[param])

    def _instance_of(self, call: Call) -> Instance:
        """The instance a zonal call names, in a known zone."""
        return self._instance(call.project, self._known_zone(call), call.params["instance"])

    def _disk_users(self, key: ZoneKey) -> list[tuple[Instance, AttachedDisk]]:
        """Every attachment of a disk, pending ones included."""
        return [(inst, att) for inst in self._instances.values() for att in inst.disks if att.disk == key]

    def _instance_json(self, inst: Instance) -> dict[str, Any]:
        sizes = {d.disk: self._disks[d.disk].size_gb for d in inst.disks if d.disk in self._disks}
        return inst.to_json(self.links, sizes)

    def dev_root(self, instance: str) -> Path:
        return self.dev_base / instance / "dev"


def valid_name(value: object, field_name: str = "resource.name") -> str:
    if not value:
        raise errors.required(field_name)
    if not isinstance(value, str) or NAME.fullmatch(value) is None:
        raise errors.invalid_field(field_name, value, NAME_RULE)
    return value


def gib_ceil(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / GIB))
