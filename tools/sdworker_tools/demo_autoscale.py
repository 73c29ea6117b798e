"""Where the demo's nodes come from: Karpenter (the default) or the scripted fallback, and the scale-in.

With ``--autoscaler karpenter`` nothing in the demo adds a node: the SD pods the operator's Deployment
makes stay Pending (they need a GPU and tolerate GKE's GPU taint, not the startup taint), Karpenter
(``sdworker_tools.karpenter``: its upstream controllers, the rig's GCE-shaped provider) turns them into
NodeClaims, simulator instances and kwok Nodes that carry the startup taint, and the demo only notices
the Nodes (to start each one's agent, as the DaemonSet's container would). The scale-in lowers
``replicas`` to 0 and waits for Karpenter to consolidate: Nodes, NodeClaims and instances go, the
runtime disks with them, and every RuntimeDisk's finalizers are released (``scale_in``).

With ``--autoscaler scripted`` the demo adds the nodes itself (``ScriptedNodes``), one after another;
its output says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.demo_report import time_of
from sdworker_tools.karpenter import NODEPOOL_LABEL, Karpenter
from sdworker_tools.nodes import Taint
from sdworker_tools.wait import WaitTimeout, wait_for

Json = dict[str, Any]
STARTUP_TAINT = Taint(c.STARTUP_TAINT_KEY, c.STARTUP_TAINT_VALUE, c.STARTUP_TAINT_EFFECT)
GPU_TAINT = Taint(c.GPU_RESOURCE, "present", "NoSchedule")


@dataclass
class ScriptedNodes:
    """The fallback: GPU nodes (each with its simulator VM) joined by this script, ``interval`` apart."""

    cluster: LocalCluster
    sim: ComputeSim
    count: int
    interval: float
    zone: str
    project: str
    say: Callable[[str], None]
    added: int = 0
    next_at: float = field(default_factory=time.monotonic)

    def step(self) -> list[str]:
        """Add the next node when its time has come; the names added."""
        now = time.monotonic()
        if self.added >= self.count or now < self.next_at:
            return []
        name = f"gpu-node-{self.added}"
        self.say(
            f"[scale-out] SCRIPTED fallback (not an autoscaler): node {self.added + 1}/{self.count} "
            f"{name} joins {self.zone} with the startup taint"
        )
        self.sim.create_instance(name, zone=self.zone, project=self.project)
        self.cluster.add_gpu_node(
            name, zone=self.zone, project=self.project, taints=(STARTUP_TAINT, GPU_TAINT), wait_ready=False
        )
        self.added += 1
        self.next_at = now + self.interval
        return [name]

    @property
    def finished(self) -> bool:
        return self.added >= self.count


def karpenter_nodes(core: client.CoreV1Api) -> list[str]:
    return sorted(n.metadata.name for n in core.list_node(label_selector=NODEPOOL_LABEL).items)


def karpenter_progress(karpenter: Karpenter, nodes: list[Json]) -> str:
    claims = karpenter.nodeclaims()
    launched = sum(bool((cl.get("status") or {}).get("providerID")) for cl in claims)
    own = [n for n in nodes if NODEPOOL_LABEL in (n["metadata"].get("labels") or {})]
    return f"Karpenter: NodeClaims {len(claims)} (launched {launched}), nodes {len(own)}"


def runtime_ready(rds: list[Json]) -> dict[str, datetime]:
    """When each node's runtime became Ready (its last step), by node."""
    out: dict[str, datetime] = {}
    for rd in rds:
        status = rd.get("status") or {}
        timings = status.get("timings") or {}
        moments = [time_of(timings.get(k)) for k in ("attached", "mounted", "verified", "prefetched")]
        done = [m for m in moments if m is not None]
        if status.get("phase") == "Ready" and done:
            out[rd["spec"]["nodeName"]] = max(done)
    return out


def registration_to_ready(rds: list[Json]) -> dict[str, float]:
    """Seconds from each node's registration (the Node's creation) to its runtime Ready, by node."""
    ready = runtime_ready(rds)
    out: dict[str, float] = {}
    for rd in rds:
        created = time_of(((rd.get("status") or {}).get("timings") or {}).get("nodeCreated"))
        node = rd["spec"]["nodeName"]
        if created is not None and node in ready:
            out[node] = (ready[node] - created).total_seconds()
    return out


def agent_to_ready(rds: list[Json], agent_started: dict[str, float]) -> dict[str, float]:
    """Seconds from each node's agent start (its DaemonSet pod's container) to its runtime Ready."""
    ready = runtime_ready(rds)
    return {n: ready[n].timestamp() - t for n, t in agent_started.items() if n in ready}


def stats(seconds: dict[str, float]) -> str:
    values = sorted(seconds.values())
    if not values:
        return "-"
    return f"max {values[-1]:.2f}s, mean {sum(values) / len(values):.2f}s"


def preprovisioned(rds: list[Json]) -> list[str]:
    """Nodes whose runtime disk was attached before the node registered (disks before nodes)."""
    out = []
    for rd in rds:
        timings = (rd.get("status") or {}).get("timings") or {}
        created, attached = time_of(timings.get("nodeCreated")), time_of(timings.get("attached"))
        if created is not None and attached is not None and attached < created:
            out.append(rd["spec"]["nodeName"])
    return sorted(out)


def describe_registration(rds: list[Json], agent_started: dict[str, float]) -> str:
    seconds = registration_to_ready(rds)
    if not seconds:
        return "no runtime Ready yet"
    early = preprovisioned(rds)
    per_node = ", ".join(f"{n} {s:.2f}s" for n, s in sorted(seconds.items()))
    return (
        f"node registered -> runtime Ready: {stats(seconds)} ({per_node}); agent started -> runtime "
        f"Ready: {stats(agent_to_ready(rds, agent_started))}; disk attached before the node registered "
        f"on {len(early)}/{len(seconds)} nodes"
    )


@dataclass(frozen=True)
class ScaleIn:
    ok: bool
    seconds: float
    report: list[str]


def scale_in(
    api: client.ApiClient,
    karpenter: Karpenter,
    sdworker: tuple[str, str],
    *,
    project: str,
    timeout: float,
    say: Callable[[str], None],
) -> ScaleIn:
    """``replicas: 0``, then wait until Karpenter has removed every node, NodeClaim and instance, the
    runtime disks are gone from the simulator and no RuntimeDisk (so no finalizer) is left."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    namespace, name = sdworker
    before = karpenter_nodes(core)
    started = time.monotonic()
    custom.patch_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SDWORKER_PLURAL, name, {"spec": {"replicas": 0}}
    )
    say(f"[scale-in] replicas 0: Karpenter consolidates the emptied nodes {before}")

    def state() -> dict[str, list[str]]:
        rds = custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"]
        disks = [
            d["name"] for d in karpenter.sim.inventory()["disks"] if f"/projects/{project}/" in d["selfLink"]
        ]
        return {
            "nodes": karpenter_nodes(core),
            "nodeclaims": [cl["metadata"]["name"] for cl in karpenter.nodeclaims()],
            "instances": [i["name"] for i in karpenter.instances()],
            "disks": disks,
            "runtimedisks": [
                f"{rd['metadata']['name']} {rd['metadata'].get('finalizers') or []}" for rd in rds
            ],
        }

    last: dict[str, list[str]] = {}

    def gone() -> bool:
        nonlocal last
        now = state()
        if now != last:
            counts = ", ".join(f"{k} {len(v)}" for k, v in now.items())
            say(f"[scale-in] [{time.monotonic() - started:6.1f}s] left: {counts}")
            last = now
        return not any(now.values())

    try:
        wait_for(
            gone, timeout=timeout, interval=0.5, what="the scale-in to remove everything", describe=state
        )
    except WaitTimeout as err:
        return ScaleIn(False, time.monotonic() - started, [f"scale-in incomplete: {err}"])
    seconds = time.monotonic() - started
    return ScaleIn(
        True,
        seconds,
        [
            f"scale-in: {len(before)} nodes consolidated by Karpenter in {seconds:.1f}s; no node, "
            "NodeClaim, instance, runtime disk or RuntimeDisk (so no finalizer) left"
        ],
    )


def first_seen(joined: dict[str, float], names: list[str], at: float | None = None) -> list[str]:
    """Record the names not seen before (with the moment), return them."""
    moment = time.monotonic() if at is None else at
    new = [n for n in names if n not in joined]
    for n in new:
        joined[n] = moment
    return new
