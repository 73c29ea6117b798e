"""The simulator's IAM denial (``FaultRule`` kind ``permission``) as the operator's cloud layer sees it.

A denied call answers 403 ``forbidden`` naming the permission (``computesim.iam``); ``GceCloud`` must turn
that into ``PermissionDenied`` (fatal, no retry storm), and the same call must work once the rule is lifted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sdworker.cloud.errors import CloudError
from sdworker.cloud.gce import GceCloud
from sdworker.cloud.provider import DiskRequest
from sdworker_tools.computesim import ComputeSim, FaultRule, SimConfig
from sdworker_tools.computesim.iam import permission_for

PROJECT, ZONE = "iam-project", "us-central1-a"


@pytest.fixture
def sim() -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="instant", block_devices=False)) as s:
        s.register_image("img", None, project=PROJECT, disk_size_gb=10)
        yield s


def ensure_disk(sim: ComputeSim, name: str) -> str:
    async def main() -> str:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        try:
            request = DiskRequest(
                PROJECT, ZONE, name, f"projects/{PROJECT}/global/images/img", "pd-balanced", 10
            )
            return (await cloud.ensure_disk(request, idempotency_key=name)).name
        finally:
            await cloud.close()

    return asyncio.run(main())


def test_a_denied_permission_is_permission_denied_until_granted(sim: ComputeSim) -> None:
    sim.add_faults(FaultRule("disks.insert", kind="permission", count=-1))
    for _ in range(2):  # it lasts: count=-1
        with pytest.raises(CloudError) as err:
            ensure_disk(sim, "d1")
        assert err.value.reason == "PermissionDenied"
        assert not err.value.retryable
        assert (
            f"Required 'compute.disks.create' permission for 'projects/{PROJECT}/zones/{ZONE}/disks'"
            in str(err.value)
        )
    assert [d["name"] for d in sim.inventory()["disks"]] == []
    assert [r["status"] for r in sim.requests() if r.get("fault") == "permission"] == [403, 403]
    sim.clear_faults()
    assert ensure_disk(sim, "d1") == "d1"


def test_permission_names_follow_the_iam_reference() -> None:
    assert permission_for("disks.insert") == "compute.disks.create"
    assert permission_for("instances.attachDisk") == "compute.instances.attachDisk"
    assert permission_for("disks.aggregatedList") == "compute.disks.list"
    with pytest.raises(ValueError, match="fault kind"):
        FaultRule("disks.insert", kind="iam")
