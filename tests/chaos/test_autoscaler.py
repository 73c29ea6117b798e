"""Karpenter scales SD replicas out while the operator is ``kill -9``-ed and a NodeClaim is deleted while its
disk is being made before its node exists; the pod runner must then serve every replica, and nothing leak.

The rig is ``make demo``'s (``sdworker_tools.demo.Demo``): its own control plane, the compute simulator,
Karpenter with the GCE-shaped provider, the operator process, an agent per node started when its DaemonSet
pod runs (with that pod's token), and the pod runner running each SD pod as a real process whose readiness
probe asks the stand-in webui. VMs boot for ``BOOT_S`` seconds before their Node registers and disk creation
is slowed, so the operator is caught making disks for NodeClaims (``--preprovision``, the default).
"""

from __future__ import annotations

import collections
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools.demo import CLUSTER_NAME, DEMO_PREFIX, Demo
from sdworker_tools.karpenter import NODEPOOL_LABEL
from sdworker_tools.wait import wait_for
from tests.chaos import invariants as inv
from tests.chaos.campaign import Campaign, Row, merge, settle_checks, violations
from tests.chaos.world import sim_fault_counts

Json = dict[str, Any]
REPLICAS = 3
BOOT_S = 8.0


@pytest.fixture
def demo() -> Iterator[Demo]:
    workdir = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
    d = Demo(REPLICAS, "fast", 0, True, 1.0, 240.0, workdir, None, autoscaler="karpenter", boot_s=BOOT_S)
    try:
        d.start()
        yield d
    finally:
        d.stop()


def step(demo: Demo) -> None:
    """What the demo's scale-out loop does each round: notice Karpenter's nodes, start their agents."""
    demo.observe_nodes()
    assert demo.agents is not None
    demo.agents.start_for(demo.joined)


def polled(demo: Demo, condition: Callable[[], Any]) -> Callable[[], Any]:
    def poll() -> Any:
        step(demo)
        return condition()

    return poll


def rds_for_claims(demo: Demo, phases: set[str]) -> list[Json]:
    """RuntimeDisks made for a NodeClaim whose Node has not registered yet, in one of ``phases``."""
    _, rds, _, _ = demo.objects()
    return [
        rd
        for rd in rds
        if {o["kind"] for o in rd["metadata"].get("ownerReferences") or []} == {"NodeClaim"}
        and (rd.get("status") or {}).get("phase") in phases
    ]


def check(demo: Demo, phase: str | None, final: bool = False) -> dict[str, list[str]]:
    assert demo.sim is not None
    sdws, rds, _, nodes = demo.objects()
    inventory = demo.sim.inventory()
    own = [n for n in nodes if NODEPOOL_LABEL in n["metadata"].get("labels", {})]
    results = {
        inv.LEAK: inv.leaked_disks(inventory, CLUSTER_NAME, rds, sdws),
        inv.DOUBLE_RW: inv.double_read_write(inventory),
        inv.FINALIZERS: inv.stuck_finalizers(rds, sdws),
        inv.NODES: inv.nodes_served(own, rds, phase),
    }
    if final:
        hosts = demo.workdir / "hosts"
        roots = [p for p in hosts.iterdir() if p.is_dir()] if hosts.exists() else []
        results[inv.LEFTOVERS] = inv.leftovers(roots, inventory, demo.sim.state_dir)
    return {k: [str(v) for v in vs] for k, vs in results.items()}


@pytest.mark.chaos_full  # its own control plane, Karpenter and the pod runner: 2.5 to 3.5 min here
def test_karpenter_scale_out_through_operator_kills_and_a_claim_deleted_mid_preprovision(
    demo: Demo, campaign: Campaign
) -> None:
    started = time.monotonic()
    assert demo.sim is not None
    assert demo.karpenter is not None
    faults: collections.Counter[str] = collections.Counter()
    demo.sim.configure(latency_overrides={"disks.insert": 3.0, "instances.attachDisk": 1.0})

    def kill_operator() -> None:
        assert demo.operator is not None
        demo.operator.kill()
        faults["operator kill -9"] += 1
        demo.start_operator()  # the Deployment's replacement pod

    demo.set_replicas(REPLICAS)
    # 1. A NodeClaim deleted while the operator makes its disk (before its node exists; Karpenter replaces the
    #    claim), and the operator killed right then, with that deletion and the other claims' disks in hand.
    (rd, *_) = wait_for(
        polled(demo, lambda: rds_for_claims(demo, {"Creating"})),
        timeout=120,
        what="a disk being made for a NodeClaim",
        describe=lambda: demo.progress(*demo.objects()[1:]),
    )
    (claim,) = [o["name"] for o in rd["metadata"]["ownerReferences"]]
    demo.karpenter.cluster.kubectl("delete", "nodeclaim", claim, "--wait=false")
    faults["NodeClaim deleted while its disk is created"] += 1
    kill_operator()
    # 2. Killed again once a node has registered and its runtime is on the way.
    wait_for(
        polled(demo, lambda: demo.joined),
        timeout=120,
        what="a Karpenter node registered",
        describe=lambda: demo.progress(*demo.objects()[1:]),
    )
    kill_operator()
    demo.sim.configure(latency_overrides={"disks.insert": 0.05, "instances.attachDisk": 0.05})

    # 3. Every replica Ready on a node whose runtime was Ready first, and serving through its port.
    wait_for(
        polled(demo, lambda: demo.done(*demo.objects()[:3])),
        timeout=240,
        what=f"{REPLICAS} SD replicas Ready",
        describe=lambda: demo.progress(*demo.objects()[1:]),
    )
    ok, report = demo.report()
    out = settle_checks(lambda: check(demo, "Ready"), timeout=120)

    # 4. The scale-in: Karpenter removes every node; nothing is left.
    scaled_in = demo.scale_in()
    end = settle_checks(lambda: check(demo, None, final=True), timeout=120)
    results = merge(out, end)
    assert demo.api is not None
    claims_left = demo.karpenter.nodeclaims()
    campaign.record(
        Row(
            f"Karpenter scale-out of {REPLICAS} SD pods (pod runner): operator kill -9, NodeClaim deleted "
            "mid pre-provisioning; scale-in",
            {**faults, **sim_fault_counts(demo.sim)},
            results,
            time.monotonic() - started,
        )
    )
    assert ok, "\n".join(report)
    assert scaled_in.ok, scaled_in.report
    assert claims_left == []
    assert (
        client.CustomObjectsApi(demo.api).list_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL
        )["items"]
        == []
    )
    assert faults["operator kill -9"] == 2
    assert violations(results) == []
