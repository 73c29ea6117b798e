"""The pre-provisioned scenario: Karpenter scales out for pending SD pods, disks made before nodes register.

Unlike the scripted scenarios, nothing here adds a node: the demo's rig (``sdworker_tools.demo.Demo`` with
``autoscaler="karpenter"`` and ``--preprovision``) raises the SDWorker's replicas, the SD pods stay
Pending, Karpenter (its upstream controllers, the rig's GCE-shaped provider) turns them into NodeClaims and
simulator VMs, the operator sees the NodeClaims and makes each node's disk while its VM boots, and the
kwok Nodes register with the startup taint. Each node's clock starts at its VM's ``instances.insert``
(the simulator's operation log: when the autoscaler asked the cloud for the node), the same moment the
scripted scenarios start theirs at; the raw figures have the same shape as ``SdworkerRun.measure``'s, so
``scaleout_report.analyse`` computes ready, floor and overhead the same way. Registration -> Ready (what
making the disk early is for) is added per node from the RuntimeDisk's ``nodeCreated`` timing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.scaleout_probe import Baseline, Json, say, sim_get
from bench.scaleout_scenarios import Scenario

from sdworker_tools import demo
from sdworker_tools.computesim.latency import profile
from sdworker_tools.demo_autoscale import registration_to_ready


def _vm_created(operations: list[Json], call_s: float) -> dict[str, float]:
    """Each VM's creation request (epoch seconds), by instance name, from the simulator's operation log."""
    out: dict[str, float] = {}
    for op in operations:
        sim = op.get("_sim") or {}
        if sim.get("method") == "instances.insert" and sim.get("insertedAt") is not None:
            name = str(op.get("targetLink", "")).rsplit("/", 1)[-1]
            out.setdefault(name, float(sim["insertedAt"]) - call_s)
    return out


def run_autoscaled(sc: Scenario, latency: str, quota: float, timeout: float) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="sdworker-bench-karpenter-"))
    rig = demo.Demo(
        sc.nodes, latency, 0, True, 0.0, timeout, workdir, autoscaler="karpenter", preprovision=True
    )
    try:
        rig.start()
        assert rig.sim is not None
        assert rig.cluster is not None
        assert rig.operator is not None
        rig.sim.configure(write_quota_per_s=quota, write_quota_burst=quota)
        say(f"[bench] {sc.label} sdworker: replicas 0 -> {sc.nodes}, Karpenter adds the nodes")
        base = Baseline.take(rig.sim, rig.cluster, rig.operator.pid)
        if not rig.scale_out():
            say(f"[bench] {sc.name}: not every replica Ready after {timeout:.0f}s")
        _, rds, _, _ = rig.objects()
        operations = sim_get(rig.sim, "operations", base.operations)
        vm_created = _vm_created(operations, profile(latency).call_write_s)
        created = {
            rd["spec"]["nodeName"]: vm_created[rd["spec"].get("instance", rd["spec"]["nodeName"])]
            for rd in rds
            if rd["spec"].get("instance", rd["spec"]["nodeName"]) in vm_created
        }
        raw = base.collect(created=created, rds=rds, agents=rig.agents, operations=operations)
        raw["registered_to_ready"] = registration_to_ready(rds)
        return raw
    finally:
        rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
