"""Typed, immutable Python views of the SDWorker and RuntimeDisk resources.

Handlers turn raw Kubernetes dicts into these (``sdworker.api.parse``) once, at the edge, so decision code
works with validated values and defaults already applied. The ``to_dict`` methods go the other way and emit
exactly the camelCase shape the CRD schemas declare, so what the operator writes is never pruned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sdworker.api import constants as c


class DiskType(StrEnum):
    PD_BALANCED = "pd-balanced"
    PD_SSD = "pd-ssd"
    HYPERDISK_BALANCED = "hyperdisk-balanced"
    HYPERDISK_ML = "hyperdisk-ml"


class RuntimeMode(StrEnum):
    PER_NODE = "PerNode"
    SHARED_READ_ONLY = "SharedReadOnly"


class Phase(StrEnum):
    """The life of a RuntimeDisk; the operator writes up to Attached and the teardown, the agent the rest."""

    PENDING = "Pending"
    CREATING = "Creating"
    ATTACHING = "Attaching"
    ATTACHED = "Attached"
    MOUNTING = "Mounting"
    READY = "Ready"
    DETACHING = "Detaching"
    DELETING = "Deleting"
    FAILED = "Failed"

    @property
    def is_provisioning(self) -> bool:
        return self in _PROVISIONING

    @property
    def is_tearing_down(self) -> bool:
        return self in (Phase.DETACHING, Phase.DELETING)


_PROVISIONING = frozenset({Phase.PENDING, Phase.CREATING, Phase.ATTACHING, Phase.ATTACHED, Phase.MOUNTING})


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the form metav1.Time serialises to (conditions)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, the form metav1.MicroTime serialises to.

    Cold-start timings use it: most steps take well under a second, so whole seconds would hide where
    the time goes. Always six fraction digits, so the strings also sort in time order.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# ---------------------------------------------------------------- SDWorker spec


@dataclass(frozen=True)
class WarmPool:
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size}


@dataclass(frozen=True)
class RuntimeSpec:
    image: str
    disk_type: DiskType = DiskType.PD_BALANCED
    disk_size_gb: int = c.DEFAULT_DISK_SIZE_GB
    mode: RuntimeMode = RuntimeMode.PER_NODE
    warm_pool: WarmPool = WarmPool()
    prefetch: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "diskType": str(self.disk_type),
            "diskSizeGb": self.disk_size_gb,
            "mode": str(self.mode),
            "warmPool": self.warm_pool.to_dict(),
            "prefetch": list(self.prefetch),
        }


@dataclass(frozen=True)
class WebUISpec:
    base_image: str
    model: str = c.DEFAULT_MODEL
    args: tuple[str, ...] = ()
    allow_insecure_extension_access: bool = False
    port: int = c.DEFAULT_PORT
    auth_secret_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "baseImage": self.base_image,
            "model": self.model,
            "args": list(self.args),
            "allowInsecureExtensionAccess": self.allow_insecure_extension_access,
            "port": self.port,
        }
        if self.auth_secret_name is not None:
            d["authSecretRef"] = {"name": self.auth_secret_name}
        return d


@dataclass(frozen=True)
class Toleration:
    """A core/v1 Toleration; empty strings mean "not set", as in the Kubernetes API."""

    key: str = ""
    operator: str = ""
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
            "effect": self.effect,
            "tolerationSeconds": self.toleration_seconds,
        }
        return {k: v for k, v in d.items() if v not in (None, "")}


@dataclass(frozen=True)
class ResourceRequirements:
    """Container requests and limits; quantities are kept as the strings Kubernetes would print."""

    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=lambda: {c.GPU_RESOURCE: "1"})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.requests:
            d["requests"] = dict(sorted(self.requests.items()))
        if self.limits:
            d["limits"] = dict(sorted(self.limits.items()))
        return d


@dataclass(frozen=True)
class SDWorkerSpec:
    runtime: RuntimeSpec
    webui: WebUISpec
    node_selector: Mapping[str, str]
    replicas: int = c.DEFAULT_REPLICAS
    tolerations: tuple[Toleration, ...] = ()
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "runtime": self.runtime.to_dict(),
            "webui": self.webui.to_dict(),
            "nodeSelector": dict(sorted(self.node_selector.items())),
            "tolerations": [t.to_dict() for t in self.tolerations],
            "resources": self.resources.to_dict(),
        }


@dataclass(frozen=True)
class SDWorker:
    """An SDWorker object as the decision code needs it: identity plus the validated spec."""

    namespace: str
    name: str
    spec: SDWorkerSpec
    uid: str = ""
    generation: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ResolvedImage:
    """A runtime image as the cloud resolved it: a family turned into one concrete image, and its digest."""

    image: str
    digest: str


# ---------------------------------------------------------------- status shared parts


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "type": self.type,
                "status": str(self.status),
                "reason": self.reason,
                "message": self.message,
                "lastTransitionTime": format_time(self.last_transition_time),
                "observedGeneration": self.observed_generation,
            }
        )


# ---------------------------------------------------------------- SDWorker status


@dataclass(frozen=True)
class NodeCounts:
    ready: int = 0
    provisioning: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "provisioning": self.provisioning, "failed": self.failed}


@dataclass(frozen=True)
class RuntimeStatus:
    image: str
    digest: str
    runtime_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "digest": self.digest, "runtimeId": self.runtime_id}


@dataclass(frozen=True)
class RolloutStatus:
    """A runtime rollout in progress: the runtime rolled to, and where it stands (issue 14)."""

    target: RuntimeStatus
    paused: bool
    target_nodes: NodeCounts
    served_nodes: NodeCounts
    updated_replicas: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "paused": self.paused,
            "targetNodes": self.target_nodes.to_dict(),
            "servedNodes": self.served_nodes.to_dict(),
            "updatedReplicas": self.updated_replicas,
        }


@dataclass(frozen=True)
class ColdStart:
    p50_seconds: float
    p95_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"p50Seconds": self.p50_seconds, "p95Seconds": self.p95_seconds}


@dataclass(frozen=True)
class SDWorkerStatus:
    observed_generation: int
    replicas: int
    ready_replicas: int
    selector: str
    nodes: NodeCounts
    conditions: tuple[Condition, ...]
    runtime: RuntimeStatus | None = None
    cold_start: ColdStart | None = None
    rollout: RolloutStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        """The full status stanza; kopf merge-patches status, so every field is always written."""
        return {
            "observedGeneration": self.observed_generation,
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "selector": self.selector,
            "nodes": self.nodes.to_dict(),
            "runtime": self.runtime.to_dict() if self.runtime else None,
            "coldStart": self.cold_start.to_dict() if self.cold_start else None,
            "rollout": self.rollout.to_dict() if self.rollout else None,
            "conditions": [cond.to_dict() for cond in self.conditions],
        }


# ---------------------------------------------------------------- RuntimeDisk


@dataclass(frozen=True)
class RuntimeDiskSpec:
    node_name: str
    zone: str
    instance: str
    project: str
    image: str
    image_digest: str
    runtime_id: str
    disk_name: str
    device_name: str
    disk_type: DiskType
    disk_size_gb: int
    mode: RuntimeMode
    mount_path: str
    prefetch: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeName": self.node_name,
            "zone": self.zone,
            "instance": self.instance,
            "project": self.project,
            "image": self.image,
            "imageDigest": self.image_digest,
            "runtimeId": self.runtime_id,
            "diskName": self.disk_name,
            "deviceName": self.device_name,
            "diskType": str(self.disk_type),
            "diskSizeGb": self.disk_size_gb,
            "mode": str(self.mode),
            "mountPath": self.mount_path,
            "prefetch": list(self.prefetch),
        }


TIMING_FIELDS = ("nodeCreated", "diskCreated", "attached", "mounted", "verified", "prefetched")


@dataclass(frozen=True)
class Timings:
    """When each step of bringing a runtime to a node finished (None: not yet)."""

    node_created: datetime | None = None
    disk_created: datetime | None = None
    attached: datetime | None = None
    mounted: datetime | None = None
    verified: datetime | None = None
    prefetched: datetime | None = None
    durations_seconds: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        moments = (
            self.node_created,
            self.disk_created,
            self.attached,
            self.mounted,
            self.verified,
            self.prefetched,
        )
        d: dict[str, Any] = {
            k: format_micro_time(v) for k, v in zip(TIMING_FIELDS, moments, strict=True) if v
        }
        if self.durations_seconds:
            d["durationsSeconds"] = dict(sorted(self.durations_seconds.items()))
        return d


@dataclass(frozen=True)
class PrefetchStats:
    bytes: int
    seconds: float
    throughput_mbps: float

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "seconds": self.seconds, "throughputMBps": self.throughput_mbps}


@dataclass(frozen=True)
class RuntimeDiskStatus:
    phase: Phase = Phase.PENDING
    device_path: str = ""
    message: str = ""
    reason: str = ""
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    timings: Timings = Timings()
    prefetch: PrefetchStats | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "phase": str(self.phase),
                "devicePath": self.device_path,
                "message": self.message,
                "reason": self.reason,
                "observedGeneration": self.observed_generation,
                "conditions": [cond.to_dict() for cond in self.conditions],
                "timings": self.timings.to_dict(),
                "prefetch": self.prefetch.to_dict() if self.prefetch else None,
            }
        )


@dataclass(frozen=True)
class RuntimeDisk:
    name: str
    spec: RuntimeDiskSpec
    status: RuntimeDiskStatus = RuntimeDiskStatus()
    deleting: bool = False
