"""Which RuntimeDisk finalizers the operator may release on its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sdworker.api import constants as c
from sdworker.api.parse import parse_runtimedisk_spec
from sdworker.api.types import Phase, RuntimeDisk, RuntimeDiskStatus, Timings
from sdworker.domain.teardown import TeardownFacts, facts_of, releasable

U, D = c.FINALIZER_UNMOUNT, c.FINALIZER_CLOUD_DISK


@pytest.mark.parametrize(
    ("phase", "node_exists", "disk_may_exist", "expected"),
    [
        (Phase.PENDING, True, False, {U: "NeverMounted", D: "NoCloudDisk"}),
        (Phase.CREATING, True, True, {U: "NeverMounted"}),
        (Phase.ATTACHED, True, True, {U: "NeverMounted"}),
        (Phase.MOUNTING, True, True, {}),  # the agent may be mid-mount: wait for it
        (Phase.READY, True, True, {}),
        (Phase.FAILED, True, True, {}),  # the agent may have mounted before failing the verify
        (Phase.READY, False, True, {U: "NodeGone"}),  # scale-in: nobody is left to unmount
        (Phase.PENDING, False, False, {U: "NodeGone", D: "NoCloudDisk"}),
    ],
)
def test_releasable(phase: Phase, node_exists: bool, disk_may_exist: bool, expected: dict[str, str]) -> None:
    got = {r.finalizer: r.reason for r in releasable(TeardownFacts(phase, node_exists, disk_may_exist))}
    assert got == expected


@pytest.mark.parametrize(
    ("phase", "disk_created", "may_exist"),
    [
        (Phase.PENDING, None, False),
        (Phase.PENDING, datetime(2026, 1, 1, tzinfo=UTC), True),  # a create was recorded
        (Phase.CREATING, None, True),  # Creating is written before the create is issued
        (Phase.FAILED, None, True),
    ],
)
def test_facts_of_a_runtimedisk(phase: Phase, disk_created: datetime | None, may_exist: bool) -> None:
    spec = parse_runtimedisk_spec(
        {
            "nodeName": "n1",
            "zone": "us-central1-a",
            "instance": "n1",
            "project": "p-123456",
            "image": "projects/p-123456/global/images/rt",
            "imageDigest": "",
            "runtimeId": "rt-12345678",
            "diskName": "sdw-1-rt",
            "deviceName": "sdw-rt",
            "diskType": "pd-balanced",
            "diskSizeGb": 50,
            "mode": "PerNode",
            "mountPath": "/mnt/sdworker/rt-12345678",
            "prefetch": [],
        }
    )
    rd = RuntimeDisk("rd", spec, RuntimeDiskStatus(phase=phase, timings=Timings(disk_created=disk_created)))
    assert facts_of(rd, node_exists=False) == TeardownFacts(phase, False, may_exist)
