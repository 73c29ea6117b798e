"""Which finalizers of a deleted RuntimeDisk may be released, and why.

A RuntimeDisk carries two finalizers (DESIGN section 3): ``sdworker.dev/unmount`` (the node agent
drops it after unmounting) and ``sdworker.dev/cloud-disk`` (the operator drops it once the cloud disk
is gone). When there is nobody left to do a job, or the job was never needed, the operator releases
the finalizer itself; this module is that decision, kept pure so every case is a table row.
"""

from __future__ import annotations

from dataclasses import dataclass

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
