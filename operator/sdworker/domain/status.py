"""Compute an SDWorker's status from what the operator observed, and the Events its transitions deserve.

Status is the operator's API to users and to autoscalers (the scale subresource reads ``replicas`` and
``selector``), so it is computed in one pure function from observations: the Deployment's counters, the
RuntimeDisks of the nodes that match, and the previous conditions (for transition times). Events are derived
by comparing old and new conditions, so they are posted on transitions only, never on every reconcile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

from sdworker.api import conditions as conds
from sdworker.api import naming
from sdworker.api.parse import SpecError
from sdworker.api.types import (
    ColdStart,
    Condition,
    ConditionStatus,
    NodeCounts,
    Phase,
    ResolvedImage,
    RolloutStatus,
    RuntimeDisk,
    RuntimeStatus,
    SDWorkerStatus,
)
from sdworker.domain.render import label_selector

READY: Final = "Ready"
RUNTIME_AVAILABLE: Final = "RuntimeAvailable"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
CONDITION_TYPES: Final = (READY, RUNTIME_AVAILABLE, PROGRESSING, DEGRADED)

REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_RUNTIME_NOT_RESOLVED: Final = "RuntimeNotResolved"
REASON_NO_MATCHING_NODES: Final = "NoMatchingNodes"
REASON_RUNTIME_NOT_READY: Final = "RuntimeNotReady"
REASON_RUNTIME_READY: Final = "RuntimeReady"
REASON_RUNTIME_DISK_FAILED: Final = "RuntimeDiskFailed"
REASON_REPLICAS_NOT_READY: Final = "ReplicasNotReady"
REASON_ALL_REPLICAS_READY: Final = "AllReplicasReady"
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"
REASON_PROVISIONING_RUNTIME: Final = "ProvisioningRuntime"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_SCALING: Final = "ScalingReplicas"
REASON_RECONCILE_COMPLETE: Final = "ReconcileComplete"
REASON_PROVISIONING_TARGET: Final = "ProvisioningTargetRuntime"
REASON_ROLLING_RUNTIME: Final = "RollingOutRuntime"
REASON_ROLLOUT_PAUSED: Final = "RolloutPaused"
REASON_AS_EXPECTED: Final = "AsExpected"

EVENT_NORMAL: Final = "Normal"
EVENT_WARNING: Final = "Warning"

# How many failed disks a Degraded message names before summarising the rest.
_FAILED_LISTED: Final = 3


@dataclass(frozen=True)
class DeploymentObservation:
    """The counters of the rendered Deployment's status (zeros when the fields are absent)."""

    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0


class Event(NamedTuple):
    type: str
    reason: str
    message: str


def count_nodes(disks: Sequence[RuntimeDisk]) -> NodeCounts:
    """Nodes by the phase of their disk for this runtime; disks on their way out are not counted."""
    live = [d for d in disks if not d.deleting and not d.status.phase.is_tearing_down]
    return NodeCounts(
        ready=sum(d.status.phase is Phase.READY for d in live),
        provisioning=sum(d.status.phase.is_provisioning for d in live),
        failed=sum(d.status.phase is Phase.FAILED for d in live),
    )


def served_runtime(resolved: ResolvedImage | None, recorded: RuntimeStatus | None) -> RuntimeStatus | None:
    """The runtime an SDWorker serves: the image just resolved, else the one its status recorded.

    A failed lookup (``CloudUnavailable``, a typo in a new image name) yields ``resolved=None``; the
    SDWorker then keeps the runtime it served, so neither its Deployment nor its status changes because
    the cloud did not answer. Only a successful resolution of a different image changes it.
    """
    if resolved is None:
        return recorded
    return RuntimeStatus(
        image=resolved.image, digest=resolved.digest, runtime_id=naming.runtime_id(resolved.image)
    )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cold_start(disks: Sequence[RuntimeDisk]) -> ColdStart | None:
    """p50/p95 seconds from node creation to a usable runtime (prefetched, or verified if no prefetch)."""
    samples = []
    for disk in disks:
        timings = disk.status.timings
        done = timings.prefetched or timings.verified
        if disk.status.phase is Phase.READY and timings.node_created and done:
            samples.append(max(0.0, (done - timings.node_created).total_seconds()))
    if not samples:
        return None
    samples.sort()
    return ColdStart(
        p50_seconds=round(_percentile(samples, 0.50), 3),
        p95_seconds=round(_percentile(samples, 0.95), 3),
    )


def _failed_summary(disks: Sequence[RuntimeDisk]) -> str:
    failed = sorted(
        (d for d in disks if d.status.phase is Phase.FAILED and not d.deleting), key=lambda d: d.name
    )
    parts = [f"{d.name} ({d.status.reason or 'Failed'}: {d.status.message or 'no message'})" for d in failed]
    listed = "; ".join(parts[:_FAILED_LISTED])
    more = f"; and {len(parts) - _FAILED_LISTED} more" if len(parts) > _FAILED_LISTED else ""
    return f"{len(parts)} RuntimeDisk(s) failed: {listed}{more}"


def _runtime_condition(
    runtime: RuntimeStatus | None,
    nodes: NodeCounts,
    matching_nodes: int,
    disks: Sequence[RuntimeDisk],
) -> tuple[ConditionStatus, str, str]:
    if runtime is None:
        return ConditionStatus.FALSE, REASON_RUNTIME_NOT_RESOLVED, "The runtime image is not resolved yet"
    if nodes.ready:
        return (
            ConditionStatus.TRUE,
            REASON_RUNTIME_READY,
            f"Runtime {runtime.runtime_id} is ready on {nodes.ready} of {matching_nodes} matching nodes",
        )
    if matching_nodes == 0:
        return (
            ConditionStatus.FALSE,
            REASON_NO_MATCHING_NODES,
            "No node matches nodeSelector yet; pending pods wait for the autoscaler to add one",
        )
    if nodes.failed:
        return ConditionStatus.FALSE, REASON_RUNTIME_DISK_FAILED, _failed_summary(disks)
    return (
        ConditionStatus.FALSE,
        REASON_RUNTIME_NOT_READY,
        f"Runtime {runtime.runtime_id} is being provisioned on {nodes.provisioning} nodes",
    )


def aggregate_status(
    *,
    name: str,
    generation: int,
    desired_replicas: int,
    deployment: DeploymentObservation | None,
    disks: Sequence[RuntimeDisk],
    matching_nodes: int,
    runtime: RuntimeStatus | None,
    previous: Sequence[Condition],
    now: datetime,
    spec_error: SpecError | None = None,
    runtime_error: tuple[str, str] | None = None,
    rollout: RolloutStatus | None = None,
) -> SDWorkerStatus:
    """The complete status of the SDWorker ``name``.

    ``disks`` are the RuntimeDisks of this SDWorker's runtime on the nodes that match its nodeSelector, and
    ``matching_nodes`` counts those nodes. With ``spec_error`` set, the spec could not be parsed: the status
    says so (Degraded/InvalidSpec) and keeps reporting what it can observe. ``runtime_error`` is the
    (reason, message) of a cloud failure to resolve the runtime image (say ``ImageNotFound``); with a
    ``runtime`` kept from an earlier resolution (``served_runtime``) the SDWorker is Degraded but keeps
    serving it. ``rollout`` is a runtime rollout in progress (``domain.rollout``): Progressing then says
    where it stands (provisioning the target, rolling pods onto it, or paused).
    """
    dep = deployment or DeploymentObservation()
    nodes = count_nodes(disks)
    desired: list[tuple[str, ConditionStatus, str, str]] = []
    if spec_error is not None:
        message = f"Invalid spec: {spec_error}"
        desired = [
            (READY, ConditionStatus.FALSE, REASON_INVALID_SPEC, message),
            (RUNTIME_AVAILABLE, ConditionStatus.UNKNOWN, REASON_INVALID_SPEC, message),
            (PROGRESSING, ConditionStatus.FALSE, REASON_INVALID_SPEC, message),
            (DEGRADED, ConditionStatus.TRUE, REASON_INVALID_SPEC, message),
        ]
    else:
        rt_status, rt_reason, rt_message = _runtime_condition(runtime, nodes, matching_nodes, disks)
        if runtime is None and runtime_error is not None:
            rt_reason, rt_message = runtime_error
        replicas_message = f"{dep.ready_replicas}/{desired_replicas} replicas ready"
        if desired_replicas == 0:
            ready = (ConditionStatus.TRUE, REASON_SCALED_TO_ZERO, "Scaled to zero replicas")
        elif dep.ready_replicas >= desired_replicas:
            ready = (ConditionStatus.TRUE, REASON_ALL_REPLICAS_READY, replicas_message)
        elif rt_status is not ConditionStatus.TRUE and dep.ready_replicas == 0:
            ready = (ConditionStatus.FALSE, rt_reason, rt_message)
        else:
            ready = (ConditionStatus.FALSE, REASON_REPLICAS_NOT_READY, replicas_message)

        if rollout is not None:
            progressing = _rollout_progress(rollout, matching_nodes, desired_replicas)
        elif nodes.provisioning:
            progressing = (
                ConditionStatus.TRUE,
                REASON_PROVISIONING_RUNTIME,
                f"Runtime is being provisioned on {nodes.provisioning} nodes",
            )
        elif deployment is None or dep.updated_replicas < desired_replicas:
            progressing = (
                ConditionStatus.TRUE,
                REASON_ROLLING_OUT,
                f"{dep.updated_replicas}/{desired_replicas} replicas updated",
            )
        elif dep.ready_replicas < desired_replicas or dep.replicas > desired_replicas:
            progressing = (ConditionStatus.TRUE, REASON_SCALING, replicas_message)
        else:
            progressing = (
                ConditionStatus.FALSE,
                REASON_RECONCILE_COMPLETE,
                "All replicas are updated and ready",
            )

        if runtime is not None and runtime_error is not None:
            # A lookup failed, but a runtime resolved earlier is still served: say both.
            reason, message = runtime_error
            degraded = (ConditionStatus.TRUE, reason, f"{message}; still serving {runtime.image}")
        elif runtime_error is not None:
            degraded = (ConditionStatus.TRUE, *runtime_error)
        elif nodes.failed:
            degraded = (ConditionStatus.TRUE, REASON_RUNTIME_DISK_FAILED, _failed_summary(disks))
        else:
            degraded = (ConditionStatus.FALSE, REASON_AS_EXPECTED, "No failures observed")
        desired = [
            (READY, *ready),
            (RUNTIME_AVAILABLE, rt_status, rt_reason, rt_message),
            (PROGRESSING, *progressing),
            (DEGRADED, *degraded),
        ]

    conditions: tuple[Condition, ...] = tuple(c for c in previous if c.type in CONDITION_TYPES)
    for type_, status, reason, message in desired:
        conditions = conds.set_condition(
            conditions,
            type_=type_,
            status=status,
            reason=reason,
            message=message,
            now=now,
            observed_generation=generation,
        )
    # A fixed order keeps the written list stable regardless of what an older version stored.
    ordered = tuple(sorted(conditions, key=lambda cond: CONDITION_TYPES.index(cond.type)))
    return SDWorkerStatus(
        observed_generation=generation,
        replicas=dep.replicas,
        ready_replicas=dep.ready_replicas,
        selector=label_selector(name),
        nodes=nodes,
        conditions=ordered,
        runtime=runtime,
        cold_start=cold_start(disks),
        rollout=rollout,
    )


def _rollout_progress(
    rollout: RolloutStatus, matching_nodes: int, desired_replicas: int
) -> tuple[ConditionStatus, str, str]:
    rid = rollout.target.runtime_id
    if rollout.paused:
        return (
            ConditionStatus.FALSE,
            REASON_ROLLOUT_PAUSED,
            f"Rollout to {rid} paused: {rollout.updated_replicas}/{desired_replicas} replicas on it",
        )
    if rollout.target_nodes.ready < matching_nodes or matching_nodes == 0:
        return (
            ConditionStatus.TRUE,
            REASON_PROVISIONING_TARGET,
            f"Runtime {rid} is ready on {rollout.target_nodes.ready} of {matching_nodes} matching nodes",
        )
    return (
        ConditionStatus.TRUE,
        REASON_ROLLING_RUNTIME,
        f"{rollout.updated_replicas}/{desired_replicas} replicas on runtime {rid}",
    )


def rollout_events(
    before: RolloutStatus | None, after: RolloutStatus | None, served: str | None
) -> list[Event]:
    """Events at a rollout's start, on each replica moved, and at its end, complete or rolled back
    (``served``: the runtime now served)."""
    if before is None and after is not None:
        return [Event(EVENT_NORMAL, "RolloutStarted", f"Rolling out runtime {after.target.runtime_id}")]
    if before is not None and after is None:
        if served == before.target.runtime_id:
            return [Event(EVENT_NORMAL, "RolloutComplete", f"Serving runtime {served}")]
        message = f"Rollout to {before.target.runtime_id} rolled back: serving runtime {served}"
        return [Event(EVENT_NORMAL, "RolloutRolledBack", message)]
    if before is not None and after is not None and before.updated_replicas != after.updated_replicas:
        message = f"{after.updated_replicas} replicas on runtime {after.target.runtime_id}"
        return [Event(EVENT_NORMAL, "RolloutProgress", message)]
    return []


def _is_warning(old: Condition | None, new: Condition) -> bool:
    if new.type == DEGRADED:
        return new.status is ConditionStatus.TRUE
    lost = old is not None and old.status is ConditionStatus.TRUE and new.status is ConditionStatus.FALSE
    return new.type in (READY, RUNTIME_AVAILABLE) and lost


def events_for_transition(old: Sequence[Condition], new: Sequence[Condition]) -> list[Event]:
    """One Event per condition whose status or reason changed; Warning when something was lost or broke.

    Message-only changes (``1/2`` to ``2/3 replicas ready``) are not transitions and post nothing.
    """
    events = []
    for cond in new:
        before = conds.find(old, cond.type)
        if before is not None and before.status == cond.status and before.reason == cond.reason:
            continue
        kind = EVENT_WARNING if _is_warning(before, cond) else EVENT_NORMAL
        events.append(Event(kind, cond.reason, cond.message))
    return events
