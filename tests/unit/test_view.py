"""A RuntimeDisk event marks only the SDWorkers whose status counts it (issue 17: not every SDWorker).

SDWorker statuses come from the operator's producer (``domain.status.aggregate_status``); the RuntimeDisk
from ``tests.unit.invalid_runtimedisks.produced_runtimedisk`` (``domain.placement``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sdworker.api import naming
from sdworker.api.types import NodeCounts, RolloutStatus, RuntimeStatus
from sdworker.domain import status as status_mod
from sdworker.view import Indexes, View
from tests.unit.invalid_runtimedisks import produced_runtimedisk
from tests.unit.invalid_specs import valid_sdworker

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def runtime(image: str) -> RuntimeStatus:
    return RuntimeStatus(image=image, digest="", runtime_id=naming.runtime_id(image))


def sdworker(
    name: str, served: RuntimeStatus | None, rolling_to: RuntimeStatus | None = None
) -> dict[str, Any]:
    body = valid_sdworker(name, "ns")
    rollout = (
        RolloutStatus(
            rolling_to, paused=False, target_nodes=NodeCounts(), served_nodes=NodeCounts(), updated_replicas=0
        )
        if rolling_to is not None
        else None
    )
    body["status"] = status_mod.aggregate_status(
        name=name,
        generation=1,
        desired_replicas=1,
        deployment=None,
        disks=[],
        matching_nodes=0,
        runtime=served,
        previous=(),
        now=NOW,
        rollout=rollout,
    ).to_dict()
    return body


def test_a_runtimedisk_marks_the_sdworkers_serving_rolling_to_or_still_choosing_its_runtime() -> None:
    disk = produced_runtimedisk(cloud=False)
    ours = disk["spec"]["runtimeId"]
    image = disk["spec"]["image"]
    other = runtime("projects/p/global/images/other")
    workers = {
        "serving": sdworker("serving", runtime(image)),
        "rolling-in": sdworker("rolling-in", other, rolling_to=runtime(image)),
        "new": sdworker("new", None),
        "elsewhere": sdworker("elsewhere", other),
    }
    assert runtime(image).runtime_id == ours
    view = View()
    view.bind(
        Indexes(
            sdworkers={("ns", name): [body] for name, body in workers.items()},
            nodes={},
            runtimedisks={},
            deployments={},
        )
    )
    assert sorted(view.owners_of(disk)) == [("ns", "new"), ("ns", "rolling-in"), ("ns", "serving")]
