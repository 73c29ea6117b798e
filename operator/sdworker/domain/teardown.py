"""Which finalizers of a deleted RuntimeDisk may be released, and why.

A RuntimeDisk carries two finalizers (docs/architecture.md section 3): ``sdworker.dev/unmount`` (the node
agent drops it after unmounting) and ``sdworker.dev/cloud-disk`` (the operator drops it once the cloud disk
is gone). When there is nobody left to do a job, or the job was never needed, the operator releases
the finalizer itself; this module is that decision, kept pure so every case is a table row. It also
decides when a runtime no longer wanted on a node may be retired at all: only once no pod bound to the
node uses it (``pods_using``; issue 14).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdworker.api import constants as c
from sdworker.api.types import Phase, RuntimeDisk

# Phases in which nothing can be mounted on the node yet.
_NEVER_MOUNTED = frozenset({Phase.PENDING, Phase.CREATING, Phase.ATTACHING, Phase.ATTACHED})


@dataclass(frozen=True)
class TeardownFacts:
    phase: Phase
    node_exists: bool
    # True once a cloud disk may exist for this RuntimeDisk (a create was issued or it was claimed).
    disk_may_exist: bool


def facts_of(rd: RuntimeDisk, *, node_exists: bool) -> TeardownFacts:
    """The facts for ``rd``: a cloud disk may exist once it left Pending (the phase is written before a
    create is issued) or once a create was recorded."""
    return TeardownFacts(
        phase=rd.status.phase,
        node_exists=node_exists,
        disk_may_exist=rd.status.phase is not Phase.PENDING or rd.status.timings.disk_created is not None,
    )


@dataclass(frozen=True)
class Release:
    finalizer: str
    reason: str


def releasable(facts: TeardownFacts) -> list[Release]:
    """Finalizers the operator may drop now; the rest wait for the agent or the cloud teardown."""
    out: list[Release] = []
    if not facts.node_exists:
        out.append(Release(c.FINALIZER_UNMOUNT, "NodeGone"))
    elif facts.phase in _NEVER_MOUNTED:
        out.append(Release(c.FINALIZER_UNMOUNT, "NeverMounted"))
    if not facts.disk_may_exist:
        out.append(Release(c.FINALIZER_CLOUD_DISK, "NoCloudDisk"))
    return out


_DONE_POD_PHASES = frozenset({"Succeeded", "Failed"})


def pods_using(pods: Iterable[Mapping[str, Any]], node: str, mount_path: str) -> list[str]:
    """``namespace/name`` of the pods bound to ``node`` that use the runtime mounted at ``mount_path``.

    A pod's ``hostPath`` volume is a bind in the container's own mount namespace: the host's unmount
    succeeds under it (no EBUSY), and a detach would then pull the disk from a running webui. So a runtime
    is retired on a node only once this list is empty. A pod counts until its object is gone (a
    terminating pod still runs), unless it has finished; a volume under the mount path counts too. A
    volume *above* it does not: the node agent's DaemonSet mounts the whole mount root (it makes the
    mounts), and it is the one that unmounts.
    """
    root = mount_path.rstrip("/")
    out = []
    for pod in pods:
        spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
        if spec.get("nodeName") != node or (pod.get("status") or {}).get("phase") in _DONE_POD_PHASES:
            continue
        for volume in spec.get("volumes") or []:
            path = str((volume.get("hostPath") or {}).get("path") or "").rstrip("/")
            if path and (path == root or path.startswith(root + "/")):
                out.append(f"{meta.get('namespace', '')}/{meta.get('name', '')}")
                break
    return sorted(out)
