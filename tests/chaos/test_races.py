"""Scale-in races: nodes (and their VMs) deleted while their disk is created or attached, and the SDWorker
deleted or its runtime changed in the middle of a scale-out; then the invariants, on real loop devices.

The simulator's operations are slowed so that each deletion lands inside the step it races with: the disk
insert still running (the disk appears after its VM is gone, attached to nothing, and must still be deleted),
the attach still pending on the VM being deleted (as ``instances.delete`` overtakes ``attachDisk`` in GCE).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools.computesim import FaultRule, SimConfig
from sdworker_tools.wait import wait_for
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.world import World
from tests.integration.test_agent_support import SIM_PROJECT, RuntimeImage, build_runtime_image


def phase_of(w: World, node: str) -> str:
    for rd in w.runtimedisks():
        if rd["spec"]["nodeName"] == node:
            return str((rd.get("status") or {}).get("phase", ""))
    return ""


def on_image(w: World, node: str, image: str) -> bool:
    return any(
        rd["spec"]["nodeName"] == node
        and rd["spec"]["image"] == image
        and (rd.get("status") or {}).get("phase") == "Attached"
        for rd in w.runtimedisks()
    )


def attach_pending(w: World, node: str) -> dict[str, Any] | None:
    for inst in w.sim.inventory()["instances"]:
        if inst["name"] == node:
            pending = [a for a in inst["_sim"]["attachments"] if a["pending"]]
            return pending[0] if pending else None
    return None


@pytest.fixture(scope="module")
def other_image(tmp_path_factory: pytest.TempPathFactory) -> RuntimeImage:
    """A second runtime, for the SDWorker to switch to mid-scale-out."""
    return build_runtime_image(
        tmp_path_factory.mktemp("chaos-other"), "sd-chaos-other", model_bytes=1 << 20, pack=True
    )


def test_nodes_deleted_runtime_changed_and_sdworker_deleted_mid_scale_out_leak_nothing(
    make_world: MakeWorld, campaign: Campaign, other_image: RuntimeImage
) -> None:
    started = time.monotonic()
    w = make_world(SimConfig(latency="fast", seed=3), seed=3)
    w.create_sdworker("races", replicas=100)

    # 1. A node removed while its disk is being created.
    w.sim.configure(latency_overrides={"disks.insert": 3.0})
    (creating,) = w.add_nodes([f"{w.label}-creating"])
    wait_for(lambda: phase_of(w, creating) == "Creating", timeout=60, what="Creating", describe=w.describe)
    w.remove_node(creating)
    w.faults["node deleted while its disk is created"] += 1

    # 2. A VM deleted while its disk's attach is pending on it, then its Node.
    w.sim.configure(latency_overrides={"disks.insert": 0.02, "instances.attachDisk": 3.0})
    (attaching,) = w.add_nodes([f"{w.label}-attaching"])
    wait_for(lambda: attach_pending(w, attaching), timeout=60, what="a pending attach", describe=w.describe)
    w.remove_node(attaching)
    w.faults["VM deleted while its disk attaches"] += 1

    # 3. The runtime changed while a scale-out is in flight: every node ends on the new image, nothing leaks.
    second = w.publish(other_image.path.parent, family=None)
    w.sim.configure(latency_overrides={"instances.attachDisk": 1.0, "disks.insert": 1.0})
    moving = w.add_nodes([f"{w.label}-move-{i}" for i in range(3)])
    wait_for(
        lambda: {"Creating", "Attaching"} & {phase_of(w, n) for n in moving},
        timeout=60,
        what="a scale-out in flight",
        describe=w.describe,
    )
    w.custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        w.namespace,
        c.SDWORKER_PLURAL,
        "races",
        {"spec": {"runtime": {"image": second.image}}},
    )
    w.faults["runtime changed during scale-out"] += 1
    w.sim.configure(latency_overrides={"instances.attachDisk": 0.02, "disks.insert": 0.02})
    # Every node gets the new runtime; the old one retires only once no pod uses it (the old ReplicaSet's
    # pods, which kwok runs, may outlive this step: retire-last), so it is not awaited here.
    wait_for(
        lambda: all(on_image(w, n, second.image) for n in moving),
        timeout=120,
        what=f"every node on {second.image}",
        describe=w.describe,
    )
    changed = settle(w, phase=None, timeout=60)

    # 4. The SDWorker deleted while its nodes' disks are being created and attached.
    w.sim.configure(latency_overrides={"disks.insert": 1.0, "instances.attachDisk": 1.0})
    batch = w.add_nodes([f"{w.label}-sdw-{i}" for i in range(4)])
    wait_for(
        lambda: {"Creating", "Attaching"} & {phase_of(w, n) for n in batch},
        timeout=60,
        what="a scale-out in flight",
        describe=w.describe,
    )
    w.delete_sdworker("races")
    w.faults["SDWorker deleted during scale-out"] += 1
    w.sim.configure(latency_overrides={"instances.attachDisk": 0.02, "disks.insert": 0.02})
    # With no SDWorker, the live nodes keep no RuntimeDisk and no disk may be left.
    mid = settle(w, phase=None, timeout=120)

    w.remove_nodes([*moving, *batch])
    end = settle(w, phase=None, final=True, timeout=120)
    results = merge(changed, mid, end)
    campaign.record(
        Row(
            "races: node gone mid-create, VM gone mid-attach, runtime changed, SDWorker deleted",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert violations(results) == []


def restart_after_the_last_node_left(
    make_world: MakeWorld, campaign: Campaign, scenario: str, seed: int, **runtime: Any
) -> None:
    """One SDWorker on two nodes; the cloud refuses deletes while the nodes and the SDWorker go, so its
    disks outlive them; then, with nothing of it left for the operator to watch (no event comes to a new
    one), the operator is restarted and the cloud deletes again: nothing may be left behind."""
    started = time.monotonic()
    w = make_world(
        SimConfig(latency="fast", block_devices=False, seed=seed),
        seed=seed,
        operator_args=(f"--project={SIM_PROJECT}",),  # as a deployment's chart value or the ADC project
    )
    w.create_sdworker("left", replicas=2, **runtime)
    nodes = w.add_nodes([f"{w.label}-{i}" for i in range(2)])
    wait_for(w.served, timeout=120, what="both nodes Attached", describe=w.describe)
    w.sim.add_faults(FaultRule("disks.delete", kind="http", http_status=503, count=-1))
    w.remove_nodes(nodes)
    w.delete_sdworker("left")
    wait_for(
        lambda: any(r["method"] == "disks.delete" and r.get("fault") for r in w.sim.requests()),
        timeout=60,
        what="the operator trying to delete the disks nobody uses",
        describe=w.describe,
    )
    apps = client.AppsV1Api(w.api)
    managed = f"{c.LABEL_APP_MANAGED_BY}={c.MANAGED_BY}"
    wait_for(
        lambda: (
            not w.runtimedisks()
            and not w.sdworkers()
            and not apps.list_namespaced_deployment(w.namespace, label_selector=managed).items
        ),
        timeout=60,
        what="the SDWorker, its Deployment and its RuntimeDisks gone",
        describe=w.describe,
    )
    w.kill_operator()
    w.sim.clear_faults()
    results = settle(w, phase=None, final=True, timeout=30)
    campaign.record(Row(scenario, w.all_faults(), results, time.monotonic() - started))
    assert violations(results) == []


def test_a_shared_disk_is_swept_by_an_operator_restarted_after_the_last_node_left(
    make_world: MakeWorld, campaign: Campaign
) -> None:
    """Regression (issue 16 bug b): the sweeper searched only the projects of the nodes and RuntimeDisks the
    running operator had seen, so one restarted after the last node left saw none and never deleted a shared
    disk that outlived its nodes. It now also sweeps its ``--project`` (on GKE: the credentials' project),
    and reads the claims from the API server, not from kopf's indexes, which a first event would bind."""
    restart_after_the_last_node_left(
        make_world,
        campaign,
        "operator restarted after the last node left: shared disk swept",
        seed=4,
        mode="SharedReadOnly",
        diskType="hyperdisk-ml",
    )


def test_a_warm_pool_nobody_wants_is_drained_by_an_operator_restarted_after_the_last_node_left(
    make_world: MakeWorld, campaign: Campaign
) -> None:
    """The same for the warm pool of a deleted SDWorker: its disks are no RuntimeDisk's, and no pool is
    wanted any more."""
    restart_after_the_last_node_left(
        make_world,
        campaign,
        "operator restarted after the last node left: unwanted warm pool drained",
        seed=5,
        warmPool={"size": 2},
    )
