"""What the node agent should do next, decided from what it observes: RuntimeDisks, mounts and its Node.

The agent is level-triggered: every pass observes the whole state of its node (the RuntimeDisks carrying
its label, the kernel's mount table, the Node's taint and runtime labels, which bring-ups are in flight)
and this module turns that into a plan. Nothing is remembered between passes, so a restarted agent (or
one that missed a watch event) computes the same plan from the same facts, which is what makes it
restart-safe and keeps it from mounting twice. Pure: no I/O, no clock; every rule is a table row in
``tests/unit/test_agent_plan.py``.

The rules, in short:

- ``Attached`` (or ``Mounting``, left behind by an agent that died) starts a bring-up: mount, verify,
  prefetch, ``Ready``. A ``Ready`` disk whose mount is gone (node reboot) is brought up again.
- A disk being deleted is unmounted, its node label removed first, then its finalizer released.
- ``Failed`` disks and mounts under the mount root that no RuntimeDisk claims are unmounted.
- The node gets ``sdworker.dev/runtime.<id>=ready`` for every disk that is ``Ready`` and mounted, and
  loses the labels of the others; the startup taint goes once every live disk is serving. The taint is
  never put back: a runtime added to a live node is gated by its label, not by the taint.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from sdworker.api import naming
from sdworker.api.constants import RUNTIME_READY_LABEL_PREFIX, RUNTIME_READY_VALUE
from sdworker.api.types import Phase
from sdworker_agent.mountinfo import Mount, mounts_at, mounts_below

# Phases in which the operator is still bringing the disk to the node: nothing is ours to do yet.
_BEFORE_ATTACH: Final = frozenset({Phase.PENDING, Phase.CREATING, Phase.ATTACHING})


@dataclass(frozen=True)
class DiskView:
    """One RuntimeDisk of this node, reduced to what the decisions need."""

    name: str
    runtime_id: str
    phase: Phase
    target: str  # where it is (to be) mounted, as a path in the agent's mount namespace
    deleting: bool = False
    holds_finalizer: bool = False  # still carries sdworker.dev/unmount
    target_problem: str = ""  # why spec.mountPath must not be mounted; empty when it is fine
    device: tuple[int, int] | None = None  # major:minor of its by-id device now; None: not there


@dataclass(frozen=True)
class NodeView:
    name: str
    tainted: bool  # carries the sdworker startup taint
    runtime_labels: Mapping[str, str] = field(default_factory=dict)  # its sdworker.dev/runtime.* labels


@dataclass(frozen=True)
class Observation:
    disks: tuple[DiskView, ...]
    mounts: tuple[Mount, ...]
    mount_dir: str  # host root + mount root: the directory whose children are runtime mounts
    node: NodeView | None  # None: the Node object is gone (or not readable yet)
    busy: frozenset[str] = frozenset()  # RuntimeDisks with a bring-up in flight
    synced: bool = True  # the complete list of this node's RuntimeDisks is known


class MountState(Enum):
    NONE = "none"  # nothing mounted at the target
    OURS = "ours"  # exactly one mount, of the disk's own device
    OTHER = "other"  # one mount of another device, or the disk's device is not there to compare
    STACKED = "stacked"  # more than one mount at the target


@dataclass(frozen=True)
class BringUp:
    """Start bringing a disk up (mount, verify, prefetch, ``Ready``); ``reason`` says why it is due."""

    name: str
    reason: str


@dataclass(frozen=True)
class Abort:
    """Ask an in-flight bring-up to stop at its next step (its disk is being deleted or is gone)."""

    name: str


@dataclass(frozen=True)
class Unmount:
    """Take every mount at ``target`` off and remove the empty mount point."""

    target: str
    reason: str
    name: str = ""  # the RuntimeDisk, or empty for a mount no RuntimeDisk claims


@dataclass(frozen=True)
class Fail:
    """Mark a disk ``Failed``: a fault on the node that retrying will not fix (the message says which)."""

    name: str
    reason: str
    message: str


@dataclass(frozen=True)
class ReleaseFinalizer:
    """Drop ``sdworker.dev/unmount`` from a disk being deleted: its mount is gone, the operator may go on."""

    name: str


@dataclass(frozen=True)
class NodePatch:
    """What changes on the Node (``nodepatch.json_patch`` says it to the API server)."""

    set_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    remove_taint: bool = False

    def __bool__(self) -> bool:
        return bool(self.set_labels or self.remove_labels or self.remove_taint)


@dataclass(frozen=True)
class Plan:
    """Actions in the order they must run: the node first (a label goes before its mount does)."""

    node: NodePatch = NodePatch()
    aborts: tuple[Abort, ...] = ()
    unmounts: tuple[Unmount, ...] = ()
    releases: tuple[ReleaseFinalizer, ...] = ()
    failures: tuple[Fail, ...] = ()
    bring_ups: tuple[BringUp, ...] = ()
    serving: tuple[str, ...] = ()  # RuntimeDisks that are Ready and mounted (for metrics)
    waiting: tuple[str, ...] = ()  # live RuntimeDisks that keep the node tainted, and why

    @property
    def idle(self) -> bool:
        return not (
            self.node or self.aborts or self.unmounts or self.releases or self.failures or self.bring_ups
        )


def target_path(host_root: str, mount_path: str, mount_root: str) -> tuple[str, str]:
    """``(target, problem)``: where ``mount_path`` lands under ``host_root``, or why it must not be used.

    The agent is privileged: a RuntimeDisk whose ``spec.mountPath`` pointed at ``/usr`` or ``/etc`` would
    have it mount over the host. So the path must be absolute, normalized and a direct child of the mount
    root whose name is a runtime id (an RFC 1035 label), as ``sdworker.api.naming.mount_path`` makes it.
    """
    root = posixpath.normpath(mount_root)
    if not mount_path.startswith("/") or posixpath.normpath(mount_path) != mount_path:
        return "", f"spec.mountPath {mount_path!r} must be an absolute, normalized path"
    parent, leaf = posixpath.split(mount_path)
    if parent != root or not naming.RFC1035_RE.fullmatch(leaf):
        return "", f"spec.mountPath {mount_path!r} must be {root}/<runtime-id>"
    return posixpath.join(posixpath.normpath(host_root), mount_path.lstrip("/")), ""


def mount_state(disk: DiskView, mounts: Iterable[Mount]) -> MountState:
    here = mounts_at(mounts, disk.target) if disk.target else ()
    if not here:
        return MountState.NONE
    if len(here) > 1:
        return MountState.STACKED
    if disk.device is not None and here[0].device == disk.device:
        return MountState.OURS
    return MountState.OTHER


def plan(obs: Observation) -> Plan:
    aborts: list[Abort] = []
    unmounts: list[Unmount] = []
    releases: list[ReleaseFinalizer] = []
    failures: list[Fail] = []
    bring_ups: list[BringUp] = []
    serving: list[str] = []
    waiting: list[str] = []
    known = {d.name for d in obs.disks}
    claimed = {d.target for d in obs.disks if d.target}

    for name in sorted(obs.busy - known):
        aborts.append(Abort(name))  # its RuntimeDisk is gone altogether

    for disk in sorted(obs.disks, key=lambda d: d.name):
        state = mount_state(disk, obs.mounts)
        busy = disk.name in obs.busy
        if disk.deleting or disk.phase.is_tearing_down:
            if busy:
                aborts.append(Abort(disk.name))
            elif state is not MountState.NONE:
                unmounts.append(Unmount(disk.target, "Deleted", disk.name))
            elif disk.deleting and disk.holds_finalizer:
                releases.append(ReleaseFinalizer(disk.name))
            continue
        if disk.phase is Phase.READY and state is MountState.OURS and not busy:
            serving.append(disk.name)
            continue
        waiting.append(f"{disk.name} ({disk.phase})")
        if busy or disk.phase in _BEFORE_ATTACH:
            continue
        if disk.phase is Phase.FAILED:
            if state is not MountState.NONE:
                unmounts.append(Unmount(disk.target, "Failed", disk.name))
        elif disk.target_problem:
            failures.append(Fail(disk.name, "InvalidMountPath", disk.target_problem))
        elif state is MountState.STACKED:
            # Never seen from this agent, but never leave a double mount: peel it, then bring up again.
            unmounts.append(Unmount(disk.target, "Stacked", disk.name))
        else:
            reason = {
                Phase.ATTACHED: "Attached",
                Phase.MOUNTING: "ResumeMounting",
                Phase.READY: "Remount",
            }[disk.phase]
            bring_ups.append(BringUp(disk.name, reason))

    if obs.synced:
        for mount in mounts_below(obs.mounts, obs.mount_dir):
            if mount.mount_point not in claimed and not any(u.target == mount.mount_point for u in unmounts):
                unmounts.append(Unmount(mount.mount_point, "Orphan"))

    return Plan(
        node=_node_patch(obs, serving),
        aborts=tuple(aborts),
        unmounts=tuple(unmounts),
        releases=tuple(releases),
        failures=tuple(failures),
        bring_ups=tuple(bring_ups),
        serving=tuple(serving),
        waiting=tuple(waiting),
    )


def _node_patch(obs: Observation, serving: list[str]) -> NodePatch:
    if obs.node is None or not obs.synced:
        return NodePatch()  # never take labels away on a partial view
    by_name = {d.name: d for d in obs.disks}
    desired = {naming.runtime_ready_label(by_name[name].runtime_id) for name in serving}
    # A bring-up in flight decides its own label when it ends: touching it now would only make it flap.
    settling = {naming.runtime_ready_label(d.runtime_id) for d in obs.disks if d.name in obs.busy}
    current = obs.node.runtime_labels
    live = [d for d in obs.disks if not d.deleting and not d.phase.is_tearing_down]
    return NodePatch(
        set_labels=tuple(sorted(k for k in desired if current.get(k) != RUNTIME_READY_VALUE)),
        remove_labels=tuple(sorted(k for k in current if k not in desired and k not in settling)),
        # No live disk means the operator has not created them yet: lifting the taint now would let SD
        # pods onto a node whose runtime is not there.
        remove_taint=obs.node.tainted and bool(live) and len(serving) == len(live),
    )


def runtime_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The node labels this agent owns."""
    return {k: v for k, v in labels.items() if k.startswith(RUNTIME_READY_LABEL_PREFIX)}
