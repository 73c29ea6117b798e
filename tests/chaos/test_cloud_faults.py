"""Cloud faults from the compute simulator, one window at a time, during a scale-out; then the invariants.

Each window switches one fault on (the simulator's own knobs: injected 5xx, failed operations, a write quota
below the operator's own rate, a full per-VM operation queue, slow operations; IAM denial and
``QUOTA_EXCEEDED`` through ``FaultRule``), adds a batch of nodes, waits until they are served or the fault
has shown, and switches it off. The operator must serve every node once the fault is gone, and a fault that
hit must have left an Event whose reason says which (the error table's reasons, ``sdworker.cloud.errors``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from google.cloud import compute_v1

from sdworker_tools.computesim import FaultRule, SimConfig, client_kwargs
from sdworker_tools.wait import wait_for
from tests.chaos import invariants as inv
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.world import SIM_PROJECT, ZONE, World, sim_fault_counts


@dataclass(frozen=True)
class Fault:
    name: str
    reasons: frozenset[
        str
    ]  # what the operator must say while it lasts (empty: nothing to say, e.g. slowness)
    config: dict[str, object]
    rules: tuple[FaultRule, ...] = ()
    busy_vm: bool = False  # another actor keeps each new VM's operation queue full


TRANSIENT = (
    Fault("5% HTTP 5xx", frozenset({"CloudUnavailable"}), {"http_error_rate": 0.05}),
    Fault(
        "10% failed operations",
        frozenset({"CloudBusy", "ZoneResourcesExhausted", "OperationFailed"}),
        {"operation_error_rate": 0.1},
    ),
    # The cloud's write quota (1/s) far below the operator's own bucket (--write-quota=50).
    Fault(
        "403 rate limit",
        frozenset({"CloudRateLimited"}),
        {"write_quota_per_s": 1.0, "write_quota_burst": 1.0},
    ),
    Fault(
        "too many pending operations",
        frozenset({"CloudBusy"}),
        {"pending_ops_per_resource": 1, "latency_overrides": {"instances.setLabels": 3.0}},
        busy_vm=True,
    ),
    Fault(
        "slow operations",
        frozenset(),
        {"latency_overrides": {"disks.insert": 2.0, "instances.attachDisk": 1.5}},
    ),
)
CLEAR: dict[str, object] = {
    "http_error_rate": 0.0,
    "operation_error_rate": 0.0,
    "write_quota_per_s": 20.0,
    "write_quota_burst": None,
    "pending_ops_per_resource": 32,
    "latency_overrides": {"instances.setLabels": 0.02, "disks.insert": 0.02, "instances.attachDisk": 0.02},
}


def keep_busy(w: World) -> Callable[[str], None]:
    """Start a slow ``setLabels`` on a VM, as another controller would, before its Node joins."""
    instances = compute_v1.InstancesClient(**client_kwargs(w.sim.endpoint))

    def busy(name: str) -> None:
        vm = instances.get(project=SIM_PROJECT, zone=ZONE, instance=name)
        instances.set_labels_unary(
            project=SIM_PROJECT,
            zone=ZONE,
            instance=name,
            instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                labels={"busy": "yes"}, label_fingerprint=vm.label_fingerprint
            ),
        )
        w.faults["VM kept busy"] += 1

    return busy


def run_window(w: World, fault: Fault, batch: list[str]) -> inv.FaultWindow | None:
    """Switch ``fault`` on, add ``batch``, wait until served, switch it off; the window if the fault hit."""
    before = sum(sim_fault_counts(w.sim).values())
    start = time.time()
    w.sim.configure(**fault.config)
    if fault.rules:
        w.sim.add_faults(*fault.rules)
    try:
        w.add_nodes(batch, on_vm=keep_busy(w) if fault.busy_vm else None)
        wait_for(w.served, timeout=240, what=f"nodes served under {fault.name}", describe=w.describe)
    finally:
        w.sim.clear_faults()
        w.sim.configure(**CLEAR)
    end = time.time()
    hit = sum(sim_fault_counts(w.sim).values()) - before
    w.faults[fault.name] += 1
    if not fault.reasons or hit == 0:
        return None
    return inv.FaultWindow(fault.name, fault.reasons, start, end)


@pytest.mark.parametrize(
    "per_window", [pytest.param(3, id="quick"), pytest.param(10, id="full", marks=pytest.mark.chaos_full)]
)
def test_transient_cloud_faults_are_survived_and_reported(
    make_world: MakeWorld, campaign: Campaign, per_window: int, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    w = make_world(
        SimConfig(latency="fast", block_devices=False, seed=5),
        seed=5,
        operator_args=("--write-quota=50", "--write-burst=10"),
    )
    w.create_sdworker("faults", replicas=100)
    windows = []
    for i, fault in enumerate(TRANSIENT):
        batch = [f"{w.label}-{i}-{j}" for j in range(per_window)]
        window = run_window(w, fault, batch)
        if window is not None:
            windows.append(window)
    out = settle(w, phase="Attached", windows=windows, timeout=120)
    w.remove_nodes([n["metadata"]["name"] for n in w.live_nodes()])
    w.delete_sdworker("faults")
    end = settle(w, phase=None, final=True, timeout=180)
    results = merge(out, end)
    campaign.record(
        Row(
            f"cloud faults: 5xx, failed ops, 403 quota, pending ops, slow ({request.node.callspec.id})",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert violations(results) == []


FATAL = (
    Fault(
        "permission denied (IAM) until granted",
        frozenset({"PermissionDenied"}),
        {},
        rules=(FaultRule("disks.insert", kind="permission", count=-1),),
    ),
    Fault(
        "QUOTA_EXCEEDED until raised",
        frozenset({"QuotaExceeded"}),
        {},
        rules=(FaultRule("disks.insert", kind="operation", code="QUOTA_EXCEEDED", count=-1),),
    ),
)


def shows(w: World, nodes: list[str], reasons: frozenset[str]) -> bool:
    """Every node in ``nodes`` has its RuntimeDisk, and each says one of ``reasons``."""
    rds = [d for d in w.runtimedisks() if d["spec"]["nodeName"] in nodes]
    return len(rds) == len(nodes) and all((d.get("status") or {}).get("reason") in reasons for d in rds)


def test_fatal_cloud_faults_are_reported_and_recovered_from_once_fixed(
    make_world: MakeWorld, campaign: Campaign
) -> None:
    # Regression (issue 16): a RuntimeDisk Failed on a fatal cloud error was never tried again, so its node
    # stayed without a runtime after the permission was granted or the quota raised. Now it is retried after
    # a back-off (--failed-retry-seconds, 5 s in this campaign).
    started = time.monotonic()
    w = make_world(SimConfig(latency="fast", block_devices=False, seed=6), seed=6)
    w.create_sdworker("fatal", replicas=100)
    windows = []
    for i, fault in enumerate(FATAL):
        batch = [f"{w.label}-{i}-{j}" for j in range(2)]
        start = time.time()
        w.sim.add_faults(*fault.rules)
        w.add_nodes(batch)
        # The fault lasts until every new node's RuntimeDisk says why it cannot proceed ...
        wait_for(
            functools.partial(shows, w, batch, fault.reasons),
            timeout=120,
            what=f"the reason of {fault.name} on every new RuntimeDisk",
            describe=w.describe,
        )
        # ... then the permission is granted again / the quota raised.
        w.sim.clear_faults()
        windows.append(inv.FaultWindow(fault.name, fault.reasons, start, time.time()))
        w.faults[fault.name] += 1
    out = settle(w, phase="Attached", windows=windows, timeout=20)
    w.remove_nodes([n["metadata"]["name"] for n in w.live_nodes()])
    w.delete_sdworker("fatal")
    end = settle(w, phase=None, final=True, timeout=120)
    results = merge(out, end)
    campaign.record(
        Row(
            "fatal cloud faults until fixed: IAM denial, QUOTA_EXCEEDED",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert violations(results) == []
