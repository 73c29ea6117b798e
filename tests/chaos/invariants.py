"""The promises the chaos campaign checks after every scenario, each as a list of violations with details.

Promise to users (issue 16): under crashes, cloud faults and bad input sdworker leaks no disk, never has a
disk attached read-write to two VMs, never leaves a finalizer stuck or a node tainted, leaves no mount or loop
device behind, and says what went wrong while it lasted. Each check reads the state the way an operator on
call would: the simulator's inventory (``/_sim/inventory``, what the cloud really holds), the API server's
objects and Events, ``/proc/self/mountinfo`` and ``losetup``. An empty list means the invariant holds.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdworker.api import constants as c
from sdworker_tools.computesim.testing import losetup_list
from tests.integration.test_agent_support import mounts_under

Json = dict[str, Any]

LEAK = "no leaked disk"
DOUBLE_RW = "no disk READ_WRITE on two VMs"
FINALIZERS = "no stuck finalizer"
NODES = "nodes served, Ready, untainted"
LEFTOVERS = "no leftover mount/loop"
VISIBLE = "faults visible"
ALL = (LEAK, DOUBLE_RW, FINALIZERS, NODES, LEFTOVERS, VISIBLE)

LABEL_MANAGED = "sdworker-managed"
LABEL_CLUSTER = "sdworker-cluster"
LABEL_POOL = "sdworker-pool"


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


@dataclass(frozen=True)
class FaultWindow:
    """A fault that lasted from ``start`` to ``end`` (epoch seconds): one of ``reasons`` must show."""

    name: str
    reasons: frozenset[str]
    start: float
    end: float


def leaked_disks(
    inventory: Mapping[str, Any], cluster_label: str, runtimedisks: Sequence[Json], sdworkers: Sequence[Json]
) -> list[Violation]:
    """Every disk labelled as this cluster's is claimed by a live RuntimeDisk or a live warm pool."""
    claimed = {d["spec"]["diskName"] for d in runtimedisks if not d["metadata"].get("deletionTimestamp")}
    pool_size = sum(
        int((w["spec"]["runtime"].get("warmPool") or {}).get("size") or 0)
        for w in sdworkers
        if not w["metadata"].get("deletionTimestamp")
    )
    pooled: collections.Counter[tuple[str, str]] = collections.Counter()
    out = []
    for disk in sorted(inventory["disks"], key=lambda d: str(d.get("creationTimestamp", ""))):
        labels = disk.get("labels") or {}
        if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_CLUSTER) != cluster_label:
            continue
        if disk["name"] in claimed:
            continue
        if labels.get(LABEL_POOL):
            # A pool disk is claimed by the pool up to the pool's size; beyond it, it is a leak.
            key = (str(disk["zone"]).rsplit("/", 1)[-1], str(labels[LABEL_POOL]))
            pooled[key] += 1
            if pooled[key] <= pool_size:
                continue
        users = [u.rsplit("/", 1)[-1] for u in disk.get("users") or []]
        out.append(
            Violation(LEAK, f"disk {disk['name']} ({disk['status']}, users {users}) claimed by nothing")
        )
    return out


def double_read_write(inventory: Mapping[str, Any]) -> list[Violation]:
    """No disk is attached READ_WRITE to one VM while attached to another (in any mode)."""
    users: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for inst in inventory["instances"]:
        for att in inst.get("disks") or []:
            users[att["source"].rsplit("/", 1)[-1]].append((inst["name"], att["mode"]))
    return [
        Violation(DOUBLE_RW, f"disk {disk} attached to {sorted(u)}")
        for disk, u in users.items()
        if len({i for i, _ in u}) > 1 and any(mode == "READ_WRITE" for _, mode in u)
    ]


def stuck_finalizers(runtimedisks: Sequence[Json], sdworkers: Sequence[Json]) -> list[Violation]:
    """After settling nothing is half-deleted: no object waits on its finalizers."""
    return [
        Violation(
            FINALIZERS,
            f"{obj['kind']} {obj['metadata']['name']} deleting since "
            f"{obj['metadata']['deletionTimestamp']} with {obj['metadata'].get('finalizers')} "
            f"(status {(obj.get('status') or {}).get('phase')}: {(obj.get('status') or {}).get('message')})",
        )
        for obj in [*runtimedisks, *sdworkers]
        if obj["metadata"].get("deletionTimestamp")
    ]


def nodes_served(nodes: Sequence[Json], runtimedisks: Sequence[Json], phase: str | None) -> list[Violation]:
    """Every live matching node is Ready and free of the startup taint, and (``phase``) has its one
    RuntimeDisk in that phase; no RuntimeDisk is left for a node that is gone."""
    out = []
    by_node: dict[str, list[Json]] = collections.defaultdict(list)
    for rd in runtimedisks:
        by_node[rd["spec"]["nodeName"]].append(rd)
    live = set()
    for node in nodes:
        name = node["metadata"]["name"]
        live.add(name)
        ready = [x for x in node["status"].get("conditions") or [] if x["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            out.append(Violation(NODES, f"node {name} not Ready"))
        if any(t["key"] == c.STARTUP_TAINT_KEY for t in node["spec"].get("taints") or []):
            out.append(Violation(NODES, f"node {name} still has the startup taint"))
        if phase is not None:
            phases = [(rd.get("status") or {}).get("phase") for rd in by_node.get(name, [])]
            if phases != [phase]:
                reasons = [(rd.get("status") or {}).get("reason") for rd in by_node.get(name, [])]
                out.append(
                    Violation(NODES, f"node {name}: RuntimeDisk phases {phases} {reasons}, want {phase}")
                )
    for name in sorted(set(by_node) - live):
        out.append(
            Violation(NODES, f"RuntimeDisk {by_node[name][0]['metadata']['name']} of gone node {name}")
        )
    return out


def leftovers(host_roots: Iterable[Path], inventory: Mapping[str, Any], state_dir: Path) -> list[Violation]:
    """At the end, with every node gone: no mount under an agent's host root, and no loop device of the
    simulator that backs no attachment in its inventory."""
    out = [
        Violation(LEFTOVERS, f"mount {m.mount_point} ({m.source})")
        for root in host_roots
        if root.exists()
        for m in mounts_under(root)
    ]
    attached = set(inventory.get("loopDevices") or [])
    prefix = str(state_dir.resolve()) + "/"
    for dev, back in losetup_list().items():
        if back.startswith(prefix) and dev not in attached:
            out.append(Violation(LEFTOVERS, f"loop device {dev} on {back} backs no attachment"))
    return out


def event_time(event: Json) -> float:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    if not stamp:
        return 0.0
    return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def faults_visible(
    windows: Sequence[FaultWindow], events: Sequence[Json], slack_s: float = 5.0
) -> list[Violation]:
    """Each fault left an Event whose reason names it, posted while it lasted (timestamps have 1 s grain)."""
    out = []
    for w in windows:
        seen = {e["reason"] for e in events if w.start - 1.0 <= event_time(e) <= w.end + slack_s}
        if not seen & w.reasons:
            out.append(
                Violation(VISIBLE, f"{w.name}: no Event reason in {sorted(w.reasons)} (saw {sorted(seen)})")
            )
    return out
