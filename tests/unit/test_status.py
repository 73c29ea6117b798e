"""SDWorker status from observations: counts, conditions, cold start, and Events on transitions only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest

from sdworker.api import naming
from sdworker.api.parse import FieldError, SpecError, parse_rollout_status, parse_runtime_status
from sdworker.api.types import (
    Condition,
    ConditionStatus,
    DiskType,
    NodeCounts,
    Phase,
    ResolvedImage,
    RolloutStatus,
    RuntimeDisk,
    RuntimeDiskSpec,
    RuntimeDiskStatus,
    RuntimeMode,
    RuntimeStatus,
    SDWorkerStatus,
    Timings,
)
from sdworker.domain import status as st
from sdworker.domain.status import DeploymentObservation, Event

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
RUNTIME = RuntimeStatus("projects/p1234/global/images/sd-1", "sha256:abc", "sd-1-1a2b3c4d")
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


def disk(
    node: str,
    phase: Phase,
    *,
    deleting: bool = False,
    node_created: datetime | None = None,
    verified: datetime | None = None,
    prefetched: datetime | None = None,
) -> RuntimeDisk:
    spec = RuntimeDiskSpec(
        node_name=node,
        zone="us-central1-a",
        instance=node,
        project="p1234",
        image=RUNTIME.image,
        image_digest=RUNTIME.digest,
        runtime_id=RUNTIME.runtime_id,
        disk_name=f"sdw-{node}",
        device_name="sdw-sd-1",
        disk_type=DiskType.PD_BALANCED,
        disk_size_gb=50,
        mode=RuntimeMode.PER_NODE,
        mount_path="/mnt/sdworker/sd-1-1a2b3c4d",
    )
    reason, message = ("QuotaExceeded", "SSD_TOTAL_GB quota") if phase is Phase.FAILED else ("", "")
    status = RuntimeDiskStatus(
        phase=phase,
        reason=reason,
        message=message,
        timings=Timings(node_created=node_created, verified=verified, prefetched=prefetched),
    )
    return RuntimeDisk(f"{node}-sd-1", spec, status, deleting)


def aggregate(
    *,
    desired: int = 2,
    deployment: DeploymentObservation | None = None,
    disks: Sequence[RuntimeDisk] = (),
    matching: int | None = None,
    runtime: RuntimeStatus | None = RUNTIME,
    previous: Sequence[Condition] = (),
    spec_error: SpecError | None = None,
) -> SDWorkerStatus:
    return st.aggregate_status(
        name="sd-webui",
        generation=4,
        desired_replicas=desired,
        deployment=deployment,
        disks=disks,
        matching_nodes=len(disks) if matching is None else matching,
        runtime=runtime,
        previous=previous,
        now=NOW,
        spec_error=spec_error,
    )


def summary(status: SDWorkerStatus) -> dict[str, tuple[str, str]]:
    return {cond.type: (str(cond.status), cond.reason) for cond in status.conditions}


READY2 = DeploymentObservation(replicas=2, ready_replicas=2, updated_replicas=2, available_replicas=2)
READY1 = DeploymentObservation(replicas=2, ready_replicas=1, updated_replicas=2, available_replicas=1)
NONE_READY = DeploymentObservation(replicas=2, ready_replicas=0, updated_replicas=2)


class Row(NamedTuple):
    id: str
    kwargs: dict[str, object]
    expected: dict[str, tuple[str, str]]


TABLE = [
    Row(
        "all-ready",
        {"deployment": READY2, "disks": [disk("n1", Phase.READY), disk("n2", Phase.READY)]},
        {
            "Ready": ("True", "AllReplicasReady"),
            "RuntimeAvailable": ("True", "RuntimeReady"),
            "Progressing": ("False", "ReconcileComplete"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "no-matching-nodes",
        {"deployment": NONE_READY, "disks": []},
        {
            "Ready": ("False", "NoMatchingNodes"),
            "RuntimeAvailable": ("False", "NoMatchingNodes"),
            "Progressing": ("True", "ScalingReplicas"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "runtime-provisioning",
        {"deployment": NONE_READY, "disks": [disk("n1", Phase.ATTACHING), disk("n2", Phase.MOUNTING)]},
        {
            "Ready": ("False", "RuntimeNotReady"),
            "RuntimeAvailable": ("False", "RuntimeNotReady"),
            "Progressing": ("True", "ProvisioningRuntime"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "half-ready",
        {"deployment": READY1, "disks": [disk("n1", Phase.READY), disk("n2", Phase.READY)]},
        {
            "Ready": ("False", "ReplicasNotReady"),
            "RuntimeAvailable": ("True", "RuntimeReady"),
            "Progressing": ("True", "ScalingReplicas"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "only-disk-failed",
        {"deployment": NONE_READY, "disks": [disk("n1", Phase.FAILED)]},
        {
            "Ready": ("False", "RuntimeDiskFailed"),
            "RuntimeAvailable": ("False", "RuntimeDiskFailed"),
            "Progressing": ("True", "ScalingReplicas"),
            "Degraded": ("True", "RuntimeDiskFailed"),
        },
    ),
    Row(
        "one-failed-one-ready",
        {"deployment": READY2, "disks": [disk("n1", Phase.FAILED), disk("n2", Phase.READY)]},
        {
            "Ready": ("True", "AllReplicasReady"),
            "RuntimeAvailable": ("True", "RuntimeReady"),
            "Progressing": ("False", "ReconcileComplete"),
            "Degraded": ("True", "RuntimeDiskFailed"),
        },
    ),
    Row(
        "rolling-out",
        {
            "deployment": DeploymentObservation(replicas=3, ready_replicas=2, updated_replicas=1),
            "disks": [disk("n1", Phase.READY), disk("n2", Phase.READY)],
        },
        {
            "Ready": ("True", "AllReplicasReady"),
            "RuntimeAvailable": ("True", "RuntimeReady"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "no-deployment-yet",
        {"deployment": None, "disks": [disk("n1", Phase.READY)]},
        {
            "Ready": ("False", "ReplicasNotReady"),
            "RuntimeAvailable": ("True", "RuntimeReady"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "scaled-to-zero",
        {"desired": 0, "deployment": DeploymentObservation(), "disks": []},
        {
            "Ready": ("True", "ScaledToZero"),
            "RuntimeAvailable": ("False", "NoMatchingNodes"),
            "Progressing": ("False", "ReconcileComplete"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "runtime-not-resolved",
        {"deployment": None, "runtime": None, "matching": 2},
        {
            "Ready": ("False", "RuntimeNotResolved"),
            "RuntimeAvailable": ("False", "RuntimeNotResolved"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },
    ),
    Row(
        "invalid-spec",
        {"spec_error": SpecError([FieldError("spec.replicas", "should be greater than or equal to 0")])},
        {
            "Ready": ("False", "InvalidSpec"),
            "RuntimeAvailable": ("Unknown", "InvalidSpec"),
            "Progressing": ("False", "InvalidSpec"),
            "Degraded": ("True", "InvalidSpec"),
        },
    ),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_conditions_table(row: Row) -> None:
    status = aggregate(**row.kwargs)  # type: ignore[arg-type]
    assert summary(status) == row.expected
    assert [cond.type for cond in status.conditions] == list(st.CONDITION_TYPES)
    assert all(cond.observed_generation == 4 for cond in status.conditions)


def test_counts_replicas_selector_and_generation() -> None:
    disks = [
        disk("a", Phase.READY),
        disk("b", Phase.PENDING),
        disk("c", Phase.ATTACHED),
        disk("d", Phase.FAILED),
        disk("e", Phase.DETACHING),
        disk("f", Phase.READY, deleting=True),
    ]
    status = aggregate(deployment=READY1, disks=disks)
    assert (status.nodes.ready, status.nodes.provisioning, status.nodes.failed) == (1, 2, 1)
    assert (status.replicas, status.ready_replicas, status.observed_generation) == (2, 1, 4)
    assert status.selector == "app.kubernetes.io/instance=sd-webui,sdworker.dev/sdworker=sd-webui"
    assert status.runtime == RUNTIME


def test_invalid_spec_message_names_the_field() -> None:
    error = SpecError([FieldError("spec.runtime.diskSizeGb", "diskSizeGb must not be smaller than ...")])
    degraded = next(c for c in aggregate(spec_error=error).conditions if c.type == "Degraded")
    assert "spec.runtime.diskSizeGb" in degraded.message


def test_failed_disks_are_named_in_the_message() -> None:
    disks = [disk(f"n{i}", Phase.FAILED) for i in range(5)]
    degraded = next(c for c in aggregate(disks=disks).conditions if c.type == "Degraded")
    assert degraded.message.startswith("5 RuntimeDisk(s) failed: n0-sd-1 (QuotaExceeded: SSD_TOTAL_GB quota)")
    assert degraded.message.endswith("and 2 more")


def test_transition_times_survive_recomputation() -> None:
    first = aggregate(deployment=READY2, disks=[disk("n1", Phase.READY)])
    again = st.aggregate_status(
        name="sd-webui",
        generation=5,
        desired_replicas=2,
        deployment=READY2,
        disks=[disk("n1", Phase.READY)],
        matching_nodes=1,
        runtime=RUNTIME,
        previous=first.conditions,
        now=NOW + timedelta(minutes=10),
    )
    assert [c.last_transition_time for c in again.conditions] == [NOW] * 4
    assert all(c.observed_generation == 5 for c in again.conditions)


def test_cold_start_percentiles_from_ready_disks() -> None:
    disks = [
        disk(f"n{i}", Phase.READY, node_created=T0, verified=T0 + timedelta(seconds=s))
        for i, s in enumerate([10, 20, 30, 40, 50])
    ]
    # Prefetch time, when present, is the end of the cold start; disks not yet Ready do not count.
    disks.append(disk("p", Phase.READY, node_created=T0, verified=T0, prefetched=T0 + timedelta(seconds=60)))
    disks.append(disk("q", Phase.MOUNTING, node_created=T0, verified=T0 + timedelta(seconds=999)))
    cold = aggregate(disks=disks).cold_start
    assert cold is not None
    assert (cold.p50_seconds, cold.p95_seconds) == (35.0, 57.5)
    assert aggregate(disks=[disk("n1", Phase.READY)]).cold_start is None


def test_status_to_dict_matches_the_crd_shape() -> None:
    d = aggregate(deployment=READY2, disks=[disk("n1", Phase.READY)]).to_dict()
    assert set(d) == {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "selector",
        "nodes",
        "runtime",
        "coldStart",
        "rollout",
        "conditions",
    }
    assert d["rollout"] is None  # no rollout: written as null so a merge-patch clears the last one
    assert d["runtime"] == {"image": RUNTIME.image, "digest": "sha256:abc", "runtimeId": RUNTIME.runtime_id}
    assert d["coldStart"] is None  # written as null so a merge-patch clears a stale value
    assert d["conditions"][0]["lastTransitionTime"] == "2025-01-01T01:00:00Z"


def cond(type_: str, status: ConditionStatus, reason: str, message: str = "m") -> Condition:
    return Condition(type_, status, reason, message, T0)


@pytest.mark.parametrize(
    ("old", "new", "events"),
    [
        ([], [cond("Ready", FALSE, "RuntimeNotReady")], [Event("Normal", "RuntimeNotReady", "m")]),
        ([cond("Ready", FALSE, "RuntimeNotReady")], [cond("Ready", FALSE, "RuntimeNotReady", "other")], []),
        (
            [cond("Ready", FALSE, "RuntimeNotReady")],
            [cond("Ready", FALSE, "ReplicasNotReady")],
            [Event("Normal", "ReplicasNotReady", "m")],
        ),
        (
            [cond("Ready", FALSE, "ReplicasNotReady")],
            [cond("Ready", TRUE, "AllReplicasReady")],
            [Event("Normal", "AllReplicasReady", "m")],
        ),
        (
            [cond("Ready", TRUE, "AllReplicasReady")],
            [cond("Ready", FALSE, "ReplicasNotReady")],
            [Event("Warning", "ReplicasNotReady", "m")],
        ),
        (
            [cond("RuntimeAvailable", TRUE, "RuntimeReady")],
            [cond("RuntimeAvailable", FALSE, "RuntimeDiskFailed")],
            [Event("Warning", "RuntimeDiskFailed", "m")],
        ),
        (
            [cond("Degraded", FALSE, "AsExpected")],
            [cond("Degraded", TRUE, "RuntimeDiskFailed")],
            [Event("Warning", "RuntimeDiskFailed", "m")],
        ),
        (
            [cond("Degraded", TRUE, "RuntimeDiskFailed")],
            [cond("Degraded", FALSE, "AsExpected")],
            [Event("Normal", "AsExpected", "m")],
        ),
        ([], [cond("Degraded", TRUE, "InvalidSpec")], [Event("Warning", "InvalidSpec", "m")]),
        (
            [cond("Ready", TRUE, "AllReplicasReady"), cond("Progressing", FALSE, "ReconcileComplete")],
            [cond("Ready", TRUE, "AllReplicasReady"), cond("Progressing", TRUE, "RollingOut")],
            [Event("Normal", "RollingOut", "m")],
        ),
    ],
    ids=[
        "first-status",
        "message-only",
        "reason-change",
        "became-ready",
        "lost-ready",
        "lost-runtime",
        "degraded",
        "recovered",
        "invalid-spec",
        "only-the-changed-one",
    ],
)
def test_events_for_transition(old: list[Condition], new: list[Condition], events: list[Event]) -> None:
    assert st.events_for_transition(old, new) == events


def test_recomputing_the_same_status_posts_no_events() -> None:
    first = aggregate(deployment=READY1, disks=[disk("n1", Phase.READY)])
    again = aggregate(deployment=READY1, disks=[disk("n1", Phase.READY)], previous=first.conditions)
    assert st.events_for_transition(first.conditions, again.conditions) == []
    assert len(st.events_for_transition((), first.conditions)) == 4


# --- issue 14: the served runtime changes only when a new image is actually resolved ---------------------


def test_served_runtime_follows_a_successful_resolution() -> None:
    new = ResolvedImage("projects/p1234/global/images/sd-2", "sha256:def")
    served = st.served_runtime(new, RUNTIME)
    assert served == RuntimeStatus(new.image, new.digest, naming.runtime_id(new.image))


def test_a_failed_resolution_keeps_the_recorded_runtime() -> None:
    """The issue's 100-node run: one getFromFamily answered CloudUnavailable and the runtime id became
    the family string's. The recorded runtime survives the round trip through status and is kept."""
    recorded = parse_runtime_status(aggregate().to_dict()["runtime"])
    assert recorded == RUNTIME
    assert st.served_runtime(None, recorded) == RUNTIME
    assert st.served_runtime(None, None) is None


@pytest.mark.parametrize(
    "raw",
    [None, "sd-1", {}, {"image": "", "runtimeId": "x"}, {"image": "i", "runtimeId": 3}, {"digest": "d"}],
)
def test_a_malformed_runtime_record_is_ignored(raw: object) -> None:
    assert parse_runtime_status(raw) is None


def test_a_kept_runtime_with_a_failed_lookup_is_degraded_but_served() -> None:
    status = st.aggregate_status(
        name="sd-webui",
        generation=4,
        desired_replicas=2,
        deployment=READY2,
        disks=[disk("n1", Phase.READY)],
        matching_nodes=1,
        runtime=RUNTIME,
        previous=(),
        now=NOW,
        runtime_error=("CloudUnavailable", "Cannot resolve family/sd: 503"),
    )
    assert status.runtime == RUNTIME
    assert summary(status)["Degraded"] == ("True", "CloudUnavailable")
    assert summary(status)["Ready"] == ("True", "AllReplicasReady")
    assert summary(status)["RuntimeAvailable"] == ("True", "RuntimeReady")
    degraded = next(cond for cond in status.conditions if cond.type == "Degraded")
    assert degraded.message == f"Cannot resolve family/sd: 503; still serving {RUNTIME.image}"


TARGET = RuntimeStatus("projects/p1234/global/images/sd-2", "sha256:def", "sd-2-5e6f7a8b")


def rolling(*, ready: int, updated: int, paused: bool = False) -> RolloutStatus:
    return RolloutStatus(TARGET, paused, NodeCounts(ready=ready), NodeCounts(ready=2), updated)


@pytest.mark.parametrize(
    ("rollout", "status", "reason", "message"),
    [
        (rolling(ready=1, updated=0), TRUE, st.REASON_PROVISIONING_TARGET, "ready on 1 of 2 matching nodes"),
        (rolling(ready=2, updated=1), TRUE, st.REASON_ROLLING_RUNTIME, "1/2 replicas on runtime sd-2"),
        (rolling(ready=2, updated=1, paused=True), FALSE, st.REASON_ROLLOUT_PAUSED, "paused: 1/2 replicas"),
    ],
)
def test_a_rollout_says_where_it_stands(
    rollout: RolloutStatus, status: ConditionStatus, reason: str, message: str
) -> None:
    new = st.aggregate_status(
        name="sd",
        generation=3,
        desired_replicas=2,
        deployment=READY2,
        disks=[disk("n1", Phase.READY), disk("n2", Phase.READY)],
        matching_nodes=2,
        runtime=RUNTIME,
        previous=(),
        now=NOW,
        rollout=rollout,
    )
    progressing = next(x for x in new.conditions if x.type == st.PROGRESSING)
    assert (progressing.status, progressing.reason) == (status, reason)
    assert message in progressing.message
    written = new.to_dict()
    assert written["runtime"]["runtimeId"] == RUNTIME.runtime_id  # the served runtime until the end
    assert parse_rollout_status(written["rollout"]) == rollout


def test_rollout_events_at_start_progress_and_end() -> None:
    start = st.rollout_events(None, rolling(ready=0, updated=0), RUNTIME.runtime_id)
    assert [e.reason for e in start] == ["RolloutStarted"]
    assert st.rollout_events(rolling(ready=2, updated=0), rolling(ready=2, updated=0), "x") == []
    progress = st.rollout_events(rolling(ready=2, updated=0), rolling(ready=2, updated=1), "x")
    assert [(e.reason, e.message) for e in progress] == [
        ("RolloutProgress", f"1 replicas on runtime {TARGET.runtime_id}")
    ]
    end = st.rollout_events(rolling(ready=2, updated=2), None, TARGET.runtime_id)
    assert [(e.reason, e.message) for e in end] == [
        ("RolloutComplete", f"Serving runtime {TARGET.runtime_id}")
    ]
    back = st.rollout_events(rolling(ready=2, updated=1), None, RUNTIME.runtime_id)
    assert [e.reason for e in back] == ["RolloutRolledBack"]
