"""Decide which runtime disks each node needs: the node -> runtimes mapping behind every RuntimeDisk.

A node needs a runtime when some SDWorker's nodeSelector matches it. SDWorkers that use the same runtime
image share one disk per node, so the decision is keyed by runtime id; when they disagree on disk
parameters the merge is deterministic and the disagreement is reported rather than flapping between them.
Deciding from whole lists (all nodes, all SDWorkers) keeps the operator level-triggered: any event simply
recomputes the desired set and the diff against what exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import ResolvedImage, RuntimeDiskSpec, RuntimeMode, SDWorker

REASON_UNSUPPORTED_PROVIDER_ID: Final = "UnsupportedProviderID"
REASON_NODE_DELETING: Final = "NodeDeleting"

_PROVIDER_ID_RE: Final = re.compile(
    r"gce://(?P<project>[a-z][-a-z0-9.:]{4,61}[a-z0-9])/(?P<zone>[a-z]+-[a-z]+[0-9]+-[a-z])/"
    r"(?P<instance>[a-z]([-a-z0-9]{0,61}[a-z0-9])?)"
)


@dataclass(frozen=True)
class NodeInfo:
    """What placement needs to know about a Node."""

    name: str
    labels: Mapping[str, str]
    provider_id: str
    deleting: bool = False


@dataclass(frozen=True)
class GceInstance:
    project: str
    zone: str
    instance: str


@dataclass(frozen=True)
class SkippedNode:
    """A node that matches an SDWorker but gets no disks, and why (an UpperCamelCase reason)."""

    node: str
    reason: str
    message: str


@dataclass(frozen=True)
class Conflict:
    """SDWorkers sharing a runtime disagree on a disk parameter; ``chosen`` is what the disk gets."""

    runtime_id: str
    field: str
    workers: tuple[str, ...]
    values: tuple[str, ...]
    chosen: str


@dataclass(frozen=True)
class Placement:
    desired: Mapping[str, RuntimeDiskSpec]
    """Desired RuntimeDisk specs by RuntimeDisk name."""
    skipped: tuple[SkippedNode, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    unresolved: tuple[str, ...] = ()
    """``namespace/name`` of matching SDWorkers whose runtime image is not resolved yet."""

    def for_node(self, node: str) -> dict[str, RuntimeDiskSpec]:
        """The desired specs of one node, by runtime id."""
        return {spec.runtime_id: spec for spec in self.desired.values() if spec.node_name == node}


def parse_provider_id(provider_id: str) -> GceInstance | None:
    """Split ``gce://PROJECT/ZONE/INSTANCE``; None for anything else (other clouds, kwok, typos)."""
    match = _PROVIDER_ID_RE.fullmatch(provider_id)
    if match is None:
        return None
    return GceInstance(match["project"], match["zone"], match["instance"])


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based node selection; an empty selector matches nothing (the CRD requires one key)."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _worker_key(worker: SDWorker) -> str:
    return f"{worker.namespace}/{worker.name}"


def place(
    nodes: Iterable[NodeInfo],
    workers: Iterable[SDWorker],
    resolved: Mapping[str, ResolvedImage],
    *,
    cluster: str = "",
    served: Mapping[tuple[str, str], ResolvedImage] | None = None,
    pinned: Mapping[tuple[str, str], ResolvedImage] | None = None,
) -> Placement:
    """The RuntimeDisks every node should have.

    ``workers`` are the live SDWorkers (callers leave out those being deleted). ``resolved`` maps each
    ``spec.runtime.image`` (an image or a family) to the concrete image and digest the cloud resolved; the
    runtime id is derived from the concrete image, so a family moving to a new image yields new disks next
    to the old ones instead of changing disks in use. ``cluster`` keeps shared disks of clusters apart.
    ``served`` maps an SDWorker's key to the image it serves (its ``status.runtime``): its nodes keep that
    runtime's disks next to the resolved one until the SDWorker serves the new one (provision first, roll
    second: ``domain.rollout``), and when its image cannot be resolved this time they keep them rather
    than losing them; such an SDWorker counts as ``unresolved``, so callers delete nothing on that pass.
    ``pinned`` maps an SDWorker that must not follow its image family to the image it rolls to instead.
    """
    served = served or {}
    pinned = pinned or {}
    ordered = sorted(workers, key=lambda w: w.key)
    desired: dict[str, RuntimeDiskSpec] = {}
    skipped: list[SkippedNode] = []
    conflicts: set[Conflict] = set()
    unresolved: set[str] = set()
    for node in sorted(nodes, key=lambda n: n.name):
        matching = [w for w in ordered if selector_matches(w.spec.node_selector, node.labels)]
        if not matching:
            continue
        if node.deleting:
            skipped.append(SkippedNode(node.name, REASON_NODE_DELETING, "Node is being deleted"))
            continue
        instance = parse_provider_id(node.provider_id)
        if instance is None:
            message = f"providerID {node.provider_id!r} is not gce://PROJECT/ZONE/INSTANCE"
            skipped.append(SkippedNode(node.name, REASON_UNSUPPORTED_PROVIDER_ID, message))
            continue
        by_runtime: dict[str, list[tuple[SDWorker, ResolvedImage]]] = {}
        for worker in matching:
            image = pinned.get(worker.key) or resolved.get(worker.spec.runtime.image)
            if image is None:
                unresolved.add(_worker_key(worker))
            for wanted in dict.fromkeys(i for i in (image, served.get(worker.key)) if i is not None):
                by_runtime.setdefault(naming.runtime_id(wanted.image), []).append((worker, wanted))
        for rid, group in sorted(by_runtime.items()):
            spec, found = _merge(node.name, instance, rid, group, cluster=cluster)
            desired[naming.runtimedisk_name(node.name, rid)] = spec
            conflicts.update(found)
    return Placement(
        desired=desired,
        skipped=tuple(skipped),
        conflicts=tuple(sorted(conflicts, key=lambda cf: (cf.runtime_id, cf.field, cf.workers))),
        unresolved=tuple(sorted(unresolved)),
    )


def _merge(
    node: str,
    instance: GceInstance,
    rid: str,
    group: list[tuple[SDWorker, ResolvedImage]],
    *,
    cluster: str,
) -> tuple[RuntimeDiskSpec, list[Conflict]]:
    """One disk for every SDWorker in ``group`` (sorted by namespace/name): the first one's type and
    mode, the largest size, and the union of prefetch lists."""
    first, image = group[0]
    runtimes = [worker.spec.runtime for worker, _ in group]
    workers = tuple(_worker_key(worker) for worker, _ in group)
    size = max(r.disk_size_gb for r in runtimes)
    conflicts = []
    for field, values, chosen in (
        ("diskType", [str(r.disk_type) for r in runtimes], str(first.spec.runtime.disk_type)),
        ("mode", [str(r.mode) for r in runtimes], str(first.spec.runtime.mode)),
        ("diskSizeGb", [str(r.disk_size_gb) for r in runtimes], str(size)),
    ):
        if len(set(values)) > 1:
            conflicts.append(Conflict(rid, field, workers, tuple(values), chosen))
    mode = first.spec.runtime.mode
    if mode is RuntimeMode.SHARED_READ_ONLY:
        disk = naming.shared_disk_name(instance.zone, rid, cluster=cluster)
    else:
        disk = naming.disk_name(node, rid)
    spec = RuntimeDiskSpec(
        node_name=node,
        zone=instance.zone,
        instance=instance.instance,
        project=instance.project,
        image=image.image,
        image_digest=image.digest,
        runtime_id=rid,
        disk_name=disk,
        device_name=naming.device_name(rid),
        disk_type=first.spec.runtime.disk_type,
        disk_size_gb=size,
        mode=mode,
        mount_path=naming.mount_path(rid),
        prefetch=tuple(sorted({path for r in runtimes for path in r.prefetch})),
    )
    return spec, conflicts


def runtimedisk_manifest(name: str, node_name: str, node_uid: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The RuntimeDisk object the operator creates for a node (``spec`` is ``RuntimeDiskSpec.to_dict()``).

    The Node owns its disks: when the autoscaler removes the node, the garbage collector deletes the
    RuntimeDisk and the finalizers run the teardown (the agent's unmount, then the cloud disk).
    """
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.RUNTIMEDISK_KIND,
        "metadata": {
            "name": name,
            "labels": {
                c.LABEL_APP_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_NODE: naming.node_label_value(spec["nodeName"]),  # for selection only
                c.LABEL_RUNTIME_ID: spec["runtimeId"],
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
            "finalizers": [c.FINALIZER_CLOUD_DISK, c.FINALIZER_UNMOUNT],
        },
        "spec": dict(spec),
    }


def diff_runtimedisks(desired: Iterable[str], existing: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(to_create, to_delete)`` RuntimeDisk names, sorted.

    Only names are compared: a RuntimeDisk spec is immutable, and a parameter change that keeps the name
    (say, a larger diskSizeGb) applies to nodes that come later rather than replacing a disk in use.
    """
    want, have = set(desired), set(existing)
    return sorted(want - have), sorted(have - want)
