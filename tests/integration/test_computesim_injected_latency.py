"""The simulator reports, per operation, the latency it injected: a benchmark subtracts it as the floor.

``bench/bench_scaleout.py`` computes sdworker's overhead as observed time minus the simulator's own time on
a node's operations; these records (``/_sim/operations``' ``_sim``) are where that comes from, so they must
add up: the injected figure is the call, the PENDING pause and the RUNNING time of the profile, and the
wall-clock moments are ordered and at least that far apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from google.cloud import compute_v1

from sdworker_tools.computesim import ComputeSim, SimConfig, client_kwargs
from sdworker_tools.computesim.latency import profile

PROJECT = "sim-project"
ZONE = "us-central1-a"


@pytest.fixture
def sim() -> Iterator[ComputeSim]:
    # API only (no loop devices): the timing records do not depend on the block devices.
    with ComputeSim(SimConfig(latency="fast", seed=3, block_devices=False)) as s:
        s.register_image("sd-runtime-v1", None, project=PROJECT, family="sd-runtime", disk_size_gb=1)
        s.create_instance("gpu-node-a", zone=ZONE, project=PROJECT)
        yield s


def test_operation_records_carry_injected_latency_and_moments(sim: ComputeSim) -> None:
    kw = client_kwargs(sim.endpoint)
    disks = compute_v1.DisksClient(**kw)
    instances = compute_v1.InstancesClient(**kw)
    ops = compute_v1.ZoneOperationsClient(**kw)
    op = disks.insert_unary(
        request=compute_v1.InsertDiskRequest(
            project=PROJECT,
            zone=ZONE,
            request_id=str(uuid.uuid4()),
            disk_resource=compute_v1.Disk(
                name="d1", size_gb=1, source_image=f"projects/{PROJECT}/global/images/sd-runtime-v1"
            ),
        )
    )
    ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    op = instances.attach_disk_unary(
        request=compute_v1.AttachDiskInstanceRequest(
            project=PROJECT,
            zone=ZONE,
            instance="gpu-node-a",
            request_id=str(uuid.uuid4()),
            attached_disk_resource=compute_v1.AttachedDisk(
                source=f"projects/{PROJECT}/zones/{ZONE}/disks/d1", device_name="rt"
            ),
        )
    )
    ops.wait(project=PROJECT, zone=ZONE, operation=op.name)

    fast = profile("fast")
    records = {o["_sim"]["method"]: o["_sim"] for o in sim.operations()}
    assert set(records) == {"disks.insert", "instances.attachDisk"}
    for method, rec in records.items():
        assert rec["injectedS"] == pytest.approx(fast.call_write_s + fast.pending_s + rec["latencyS"]), method
        assert rec["insertedAt"] <= rec["runningAt"] <= rec["endedAt"], method
        # PENDING lasted at least the profile's pause and RUNNING at least the sampled latency.
        assert rec["endedAt"] - rec["insertedAt"] >= fast.pending_s + rec["latencyS"] - 0.01, method
    # The first disk of an image in a zone also pays the image copy into the zone.
    assert records["disks.insert"]["latencyS"] >= fast.first_in_zone_s
