"""Which RuntimeDisk finalizers the operator may release on its own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import parse_runtimedisk_spec, parse_sdworker
from sdworker.api.types import Phase, RuntimeDisk, RuntimeDiskStatus, Timings
from sdworker.domain import render
from sdworker.domain.teardown import TeardownFacts, facts_of, pods_using, releasable
from tests.unit.invalid_specs import valid_sdworker

REPO = Path(__file__).resolve().parents[2]

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


def _pod(node: str, runtime_id: str, *, phase: str = "Running") -> dict[str, Any]:
    """An SD pod as the operator renders it (``render.pod_template``), bound to ``node``."""
    template = render.pod_template("sd", parse_sdworker(valid_sdworker("sd", "ns")).spec, runtime_id)
    return {
        "metadata": {"name": f"sd-{node}-{runtime_id}", "namespace": "ns"},
        "spec": {**template["spec"], "nodeName": node},
        "status": {"phase": phase},
    }


def test_a_runtime_is_in_use_while_a_pod_on_its_node_mounts_it() -> None:
    v1, v2 = "sd-1-00000001", "sd-2-00000002"
    pods = [_pod("n1", v1), _pod("n2", v2), _pod("n3", v1, phase="Succeeded")]
    assert pods_using(pods, "n1", naming.mount_path(v1)) == [f"ns/sd-n1-{v1}"]
    assert pods_using(pods, "n1", naming.mount_path(v2)) == []  # another runtime on the node
    assert pods_using(pods, "n2", naming.mount_path(v1)) == []  # the runtime on another node
    assert pods_using(pods, "n3", naming.mount_path(v1)) == []  # a finished pod holds nothing


def test_the_node_agent_does_not_hold_the_runtimes_it_mounts() -> None:
    daemonset = next(
        d
        for d in yaml.safe_load_all((REPO / "daemonset" / "manifests" / "daemonset.yaml").read_text())
        if d and d["kind"] == "DaemonSet"
    )
    agent = {
        "metadata": {"name": "sdworker-agent-x", "namespace": "sdworker-system"},
        "spec": {**daemonset["spec"]["template"]["spec"], "nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    assert pods_using([agent], "n1", naming.mount_path("sd-1-00000001")) == []
