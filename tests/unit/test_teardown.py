"""Which RuntimeDisk finalizers the operator may release on its own."""

from __future__ import annotations

import pytest

from sdworker.api import constants as c
from sdworker.api.types import Phase
from sdworker.domain.teardown import TeardownFacts, releasable

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
