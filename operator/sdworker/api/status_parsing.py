"""Read back what earlier reconciles wrote into status: times, conditions, the served runtime, the rollout.

Unlike specs, these are read leniently: a malformed entry is skipped or read as absent instead of failing,
because status is recomputed on every reconcile and the old values only carry history (transition times,
the runtime being served). Losing a mangled entry costs one timestamp; failing would block the update.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sdworker.api.types import Condition, ConditionStatus, NodeCounts, RolloutStatus, RuntimeStatus


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment.astimezone(UTC)


def parse_conditions(raw: object) -> tuple[Condition, ...]:
    """Read previously written conditions, skipping malformed entries instead of failing."""
    if not isinstance(raw, list | tuple):
        return ()
    result: list[Condition] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        try:
            generation = item.get("observedGeneration")
            result.append(
                Condition(
                    type=str(item["type"]),
                    status=ConditionStatus(item["status"]),
                    reason=str(item.get("reason", "")),
                    message=str(item.get("message", "")),
                    last_transition_time=parse_time(str(item["lastTransitionTime"])),
                    observed_generation=generation if isinstance(generation, int) else None,
                )
            )
        except (KeyError, ValueError, TypeError):
            continue
    return tuple(result)


def parse_runtime_status(raw: object) -> RuntimeStatus | None:
    """Read the runtime a previous reconcile recorded in ``status.runtime``; None when absent or malformed.

    This record is what an SDWorker keeps serving while its image cannot be resolved (issue 14): the
    served runtime changes only when a new image is actually resolved, never because a lookup failed.
    """
    if not isinstance(raw, Mapping):
        return None
    image, digest, runtime_id = raw.get("image"), raw.get("digest", ""), raw.get("runtimeId")
    if not (isinstance(image, str) and image and isinstance(runtime_id, str) and runtime_id):
        return None
    return RuntimeStatus(image=image, digest=digest if isinstance(digest, str) else "", runtime_id=runtime_id)


def _counts(raw: object) -> NodeCounts:
    got = raw if isinstance(raw, Mapping) else {}
    values = {k: got.get(k) for k in ("ready", "provisioning", "failed")}
    return NodeCounts(**{k: v if isinstance(v, int) else 0 for k, v in values.items()})


def parse_rollout_status(raw: object) -> RolloutStatus | None:
    """Read the rollout a previous reconcile recorded in ``status.rollout``; None when absent or malformed.

    Its target is what a pinned SDWorker, or one whose image lookup fails, keeps rolling to (issue 14).
    """
    if not isinstance(raw, Mapping):
        return None
    target = parse_runtime_status(raw.get("target"))
    if target is None:
        return None
    updated = raw.get("updatedReplicas")
    return RolloutStatus(
        target=target,
        paused=raw.get("paused") is True,
        target_nodes=_counts(raw.get("targetNodes")),
        served_nodes=_counts(raw.get("servedNodes")),
        updated_replicas=updated if isinstance(updated, int) else 0,
    )
