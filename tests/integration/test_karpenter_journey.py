"""The user journey with a real autoscaler: Karpenter scales SD replicas out from zero nodes and back in.

Everything runs as ``make demo`` runs it (``sdworker_tools.demo.Demo``, in this process): its own control
plane, the compute API simulator, Karpenter with the rig's GCE-shaped provider, the operator process, an
agent per node with its DaemonSet pod's identity, and the pod runner running each SD pod as a real process
(the stand-in webui of ``demo_image``, asked through its port what a user would ask: ``journey``).

One run, two scale-outs of 3 replicas from zero nodes, each followed by the scale-in to zero: first with
the operator making disks before nodes (the default), then, after restarting it with
``--no-preprovision``, without. Karpenter's VMs boot for ``BOOT_S`` seconds after their instance is
RUNNING (as a GCE VM does before its kubelet registers), so the window in which a disk can be made before
its Node exists is there to observe; disk creation and attach take the realistic profile's time.
Karpenter may launch one node more than needed (kubernetes-sigs/karpenter#3121): nothing here counts
nodes; it counts Ready replicas and what is left.
The figures node registered -> runtime Ready, with and without, are printed (``-s``) and recorded as
properties (``--junitxml``); the test asserts what must hold, not how fast. Last, a NodeClaim deleted
while its VM boots must take the disk made for it, and its RuntimeDisk, with it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools.computesim.latency import profile
from sdworker_tools.demo import DEMO_PREFIX, Demo
from sdworker_tools.demo_autoscale import (
    agent_to_ready,
    karpenter_nodes,
    preprovisioned,
    registration_to_ready,
    stats,
)
from sdworker_tools.demo_report import pod_ready, time_of
from sdworker_tools.karpenter import NODEPOOL_LABEL
from sdworker_tools.wait import wait_for

REPLICAS = 3
BOOT_S = 20.0
# Disk creation and attach take what they take on GCE (the realistic profile's figures, ~6 s and ~3 s),
# the rest of the simulator stays fast: the difference disks before nodes makes is then visible.
SLOW_OPS = ("disks.insert", "instances.attachDisk")
Json = dict[str, Any]


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    workdir = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
    d = Demo(
        REPLICAS,
        "fast",
        0,
        True,
        1.0,
        240.0,
        workdir,
        None,
        autoscaler="karpenter",
        boot_s=BOOT_S,
    )
    try:
        d.start()
        assert d.sim is not None
        realistic = profile("realistic").operations
        d.sim.configure(latency_overrides={op: realistic[op] for op in SLOW_OPS})
        yield d
    finally:
        d.stop()
    assert not workdir.exists()


def ended_at(op: Json) -> datetime:
    return datetime.fromtimestamp(op["_sim"]["endedAt"], UTC)


def scale_out_and_check(demo: Demo) -> tuple[list[Json], list[Json]]:
    """Replicas 0 -> 3 through Karpenter; every replica Ready on a node whose runtime was Ready first,
    and serving. Returns the RuntimeDisks and Nodes as they were then."""
    assert demo.api is not None
    assert karpenter_nodes(client.CoreV1Api(demo.api)) == []
    assert demo.scale_out(), "the scale-out did not finish"
    ok, report = demo.report()
    assert ok, "\n".join(report)
    _, rds, pods, nodes = demo.objects()
    assert len([p for p in pods if pod_ready(p) is not None]) >= REPLICAS
    return rds, nodes


def scale_in_and_check(demo: Demo, nodes: list[Json]) -> None:
    """Replicas 0 -> Karpenter consolidates: no node, NodeClaim, instance, disk or RuntimeDisk left."""
    assert demo.karpenter is not None
    assert demo.api is not None
    assert demo.sim is not None
    result = demo.scale_in()
    assert result.ok, result.report
    custom = client.CustomObjectsApi(demo.api)
    assert custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"] == []
    assert karpenter_nodes(client.CoreV1Api(demo.api)) == []
    assert demo.karpenter.nodeclaims() == []
    assert demo.karpenter.instances() == []
    assert demo.sim.inventory()["disks"] == []
    # ... the nodes' instances through instances.delete, as GCE would be asked (autoDelete disks go too).
    deleted = {
        o["targetLink"].rsplit("/", 1)[1]
        for o in demo.sim.operations()
        if o["_sim"]["method"] == "instances.delete" and "error" not in o
    }
    own = {n["metadata"]["name"] for n in nodes if NODEPOOL_LABEL in n["metadata"].get("labels", {})}
    assert own
    assert own <= deleted


def test_karpenter_scale_out_and_in_with_and_without_disks_before_nodes(
    demo: Demo, record_property: Any
) -> None:
    # 1. Disks before nodes (the operator's default).
    rds, nodes = scale_out_and_check(demo)
    by_node = {n["metadata"]["name"]: n for n in nodes}
    ready = [rd for rd in rds if (rd.get("status") or {}).get("phase") == "Ready"]
    assert len(ready) >= REPLICAS
    assert demo.sim is not None
    ops = demo.sim.operations()
    for rd in ready:
        node = by_node[rd["spec"]["nodeName"]]
        registered = time_of(node["metadata"]["creationTimestamp"])
        assert registered is not None
        zone = node["metadata"]["labels"]["topology.kubernetes.io/zone"]
        # The disk was made in the node's zone and attached to its instance before the Node existed
        # (the simulator's operation log; a Node's creationTimestamp has whole seconds).
        (insert,) = [
            o
            for o in ops
            if o["_sim"]["method"] == "disks.insert"
            and o["targetLink"].endswith(f"/disks/{rd['spec']['diskName']}")
        ]
        assert f"/zones/{zone}/" in insert["targetLink"]
        assert ended_at(insert) < registered, (insert, node["metadata"])
        attach = [
            o
            for o in ops
            if o["_sim"]["method"] == "instances.attachDisk"
            and o["targetLink"].endswith(f"/zones/{zone}/instances/{rd['spec']['instance']}")
        ]
        assert attach, rd["spec"]
        assert ended_at(attach[0]) < registered, (attach, node["metadata"])
        # One RuntimeDisk, owned by the NodeClaim first and then by the Node too.
        kinds = {o["kind"] for o in rd["metadata"]["ownerReferences"]}
        assert kinds == {"NodeClaim", "Node"}, rd["metadata"]["ownerReferences"]
    assert sorted(preprovisioned(rds)) == sorted(rd["spec"]["nodeName"] for rd in ready)
    started = demo.agents.started() if demo.agents else {}
    with_pre, with_pre_agent = registration_to_ready(rds), agent_to_ready(rds, started)
    scale_in_and_check(demo, nodes)

    # 2. The same rig, the operator restarted with --no-preprovision.
    demo.start_operator(preprovision=False)
    rds, nodes = scale_out_and_check(demo)
    assert preprovisioned(rds) == []
    assert all({o["kind"] for o in rd["metadata"]["ownerReferences"]} == {"Node"} for rd in rds)
    started = demo.agents.started() if demo.agents else {}
    without, without_agent = registration_to_ready(rds), agent_to_ready(rds, started)
    scale_in_and_check(demo, nodes)

    line = (
        f"boot {BOOT_S:g}s; node registered -> runtime Ready: with disks before nodes {stats(with_pre)}, "
        f"without {stats(without)}; agent started -> runtime Ready: with {stats(with_pre_agent)}, "
        f"without {stats(without_agent)}"
    )
    print(f"\n[karpenter-journey] {line}")
    record_property("registration_to_ready_with_preprovision_s", with_pre)
    record_property("registration_to_ready_without_preprovision_s", without)
    record_property("agent_to_ready_with_preprovision_s", with_pre_agent)
    record_property("agent_to_ready_without_preprovision_s", without_agent)


def test_a_claimed_disk_whose_node_never_comes_is_cleaned_up(demo: Demo) -> None:
    """A NodeClaim deleted while its VM boots: the RuntimeDisk made for it is released, its disk deleted
    (or gone with the instance), and no Node ever registers."""
    assert demo.karpenter is not None
    assert demo.api is not None
    assert demo.sim is not None
    demo.start_operator(preprovision=True)
    custom, core = client.CustomObjectsApi(demo.api), client.CoreV1Api(demo.api)
    # VMs that boot for 10 minutes: the claim's node cannot register during this test.
    demo.karpenter.cluster.kubectl(
        "patch", "kwoknodeclass", "gce-gpu", "--type=merge", "-p", '{"spec":{"nodeRegistrationDelay":"600s"}}'
    )
    demo.set_replicas(1)

    def attached_for_claim() -> Json | None:
        for rd in custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"]:
            owners = {o["kind"] for o in rd["metadata"].get("ownerReferences") or []}
            if owners == {"NodeClaim"} and (rd.get("status") or {}).get("phase") == "Attached":
                return dict(rd)
        return None

    rd = wait_for(
        attached_for_claim,
        timeout=120,
        what="a RuntimeDisk Attached for a NodeClaim",
        describe=lambda: (
            demo.karpenter.nodeclaims() if demo.karpenter else [],
            demo.sim.inventory()["disks"] if demo.sim else [],
        ),
    )
    disk, instance = rd["spec"]["diskName"], rd["spec"]["instance"]
    (claim,) = [o["name"] for o in rd["metadata"]["ownerReferences"]]
    inventory = demo.sim.inventory()
    assert [d["name"] for d in inventory["disks"]] == [disk]
    assert f"/zones/{rd['spec']['zone']}/" in inventory["disks"][0]["selfLink"]
    assert karpenter_nodes(core) == []

    demo.set_replicas(0)  # or Karpenter would launch another node for the pending pod
    demo.karpenter.cluster.kubectl("delete", "nodeclaim", claim, "--wait=false")

    def gone() -> bool:
        return not (
            custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"]
            or demo.sim is None
            or demo.sim.inventory()["disks"]
            or (demo.karpenter and (demo.karpenter.nodeclaims() or demo.karpenter.instances()))
        )

    wait_for(
        gone,
        timeout=120,
        what=f"NodeClaim {claim}, instance {instance}, disk {disk} and its RuntimeDisk gone",
        describe=lambda: (
            custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"],
            demo.sim.inventory()["disks"] if demo.sim else None,
        ),
    )
    assert karpenter_nodes(core) == []
