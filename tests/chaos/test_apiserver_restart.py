"""The API server stopped and started again (same etcd, port and certificates) in the middle of a scale-out,
while the cloud keeps working; then the operator and the agents must carry on through new watches.

Real agents on loop devices serve the nodes. The restart is timed to a disk being created: the simulator's
``disks.insert`` is slowed, the API server goes down while that operation runs and comes back once it is DONE,
so the operator has cloud results to report to an API server that is not there. Afterwards, two changes that
only a live watch can bring prove the watches were re-established, not just the periodic resync: a node that
joins after the restart must be served (the operator's node index is fed by its watch alone), and deleting the
SDWorker must make every agent, the first nodes' ones started before the restart too, unmount and release its
RuntimeDisk.
"""

from __future__ import annotations

import time
from typing import Any

from sdworker_tools.computesim import SimConfig
from sdworker_tools.wait import wait_for
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.test_agents import POLICY_FILES
from tests.chaos.world import GPU_TAINT, STARTUP_TAINT, World
from tests.integration.test_agent_support import AgentProcess, mounts_under

TAINTS = (STARTUP_TAINT, GPU_TAINT)


def insert_in_flight(w: World) -> dict[str, Any] | None:
    """A ``disks.insert`` the simulator is still running."""
    ops = [o for o in w.sim.operations() if o["_sim"]["method"] == "disks.insert" and o["status"] != "DONE"]
    return ops[0] if ops else None


def done(w: World, name: str) -> bool:
    return any(o["name"] == name and o["status"] == "DONE" for o in w.sim.operations())


def test_the_api_server_restarted_mid_scale_out_operator_and_agents_recover(
    make_world: MakeWorld, campaign: Campaign
) -> None:
    started = time.monotonic()
    w = make_world(SimConfig(latency="fast", seed=31), seed=31)
    h = w.harness
    h.install(POLICY_FILES)
    agents: dict[str, AgentProcess] = {}

    def join(names: list[str]) -> list[str]:
        added = w.add_nodes(names, taints=TAINTS)
        for n in added:
            agents[n] = h.start_agent(n, h.agent_credentials(n))
        return added

    w.create_sdworker("restart", replicas=10)
    join([f"{w.label}-a", f"{w.label}-b"])
    wait_for(lambda: w.served("Ready"), timeout=120, what="the first nodes Ready", describe=w.describe)

    # The scale-out, with disk creation slow enough for the API server to go down in the middle of one; the
    # new nodes' agents start once it is back (their start-up needs the API server and may take seconds).
    w.sim.configure(latency_overrides={"disks.insert": 10.0, "instances.attachDisk": 0.5})
    more = w.add_nodes([f"{w.label}-c", f"{w.label}-d", f"{w.label}-e"], taints=TAINTS)
    op = wait_for(
        lambda: insert_in_flight(w),
        timeout=60,
        interval=0.05,
        what="a disk being created",
        describe=w.describe,
    )
    w.cluster.restart_apiserver(
        while_down=lambda: wait_for(
            lambda: done(w, op["name"]), timeout=60, interval=0.1, what=f"operation {op['name']} DONE"
        )
    )
    w.faults["kube-apiserver restarted mid disks.insert"] += 1
    for n in more:
        agents[n] = h.start_agent(n, h.agent_credentials(n))
    w.sim.configure(latency_overrides={"disks.insert": 0.05, "instances.attachDisk": 0.05})
    ready = settle(w, phase="Ready", timeout=180)
    # Recovered by themselves: the operator is the process from before the restart, and no agent died.
    assert w.operator.alive()
    assert w.operator.starts == 1
    assert [n for n, a in agents.items() if a.proc is None or not a.proc.alive()] == []

    # Watches re-established: a node joining now is served ...
    join([f"{w.label}-late"])
    late = settle(w, phase="Ready", timeout=120)

    # ... and every agent (the first nodes' from before the restart too) follows its RuntimeDisk's deletion.
    w.delete_sdworker("restart")
    wait_for(
        lambda: not w.runtimedisks(), timeout=120, what="every RuntimeDisk released", describe=w.describe
    )
    gone = settle(w, phase=None, timeout=120)
    left = [str(m.mount_point) for a in agents.values() for m in mounts_under(a.host_root)]

    w.remove_nodes(list(agents))
    end = settle(w, phase=None, host_roots=[a.host_root for a in agents.values()], final=True, timeout=120)
    results = merge(ready, late, gone, end)
    campaign.record(
        Row(
            "kube-apiserver restarted mid scale-out (agents on loop devices); a node joins; SDWorker deleted",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert left == [], "mounts left after the SDWorker was deleted"
    assert violations(results) == []
