"""RuntimeDisk phase transitions and timing keys: which phase may follow which, and who may write it.

Two writers share one status (docs/architecture.md, "The API"): the operator drives a disk through the
cloud (Pending -> Creating -> Attaching -> Attached, and the teardown), the node agent takes it from there
(Mounting -> Ready, or Failed). Both write through one updater (``sdworker.kube.status.update_status``,
read-modify-write guarded by resourceVersion); this module is the rule that updater's callers check,
as data and pure functions (no I/O), so a table test can cover it the way the agent's ``plan`` is covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sdworker.api.types import TIMING_FIELDS, Phase, format_micro_time

Json = dict[str, Any]


class Writer(StrEnum):
    OPERATOR = "operator"
    AGENT = "agent"


# The phases each writer may set. Failed is both's: the operator for a fatal cloud error, the agent for a
# disk it cannot mount or verify.
WRITES: Final[Mapping[Writer, frozenset[Phase]]] = {
    Writer.OPERATOR: frozenset(
        {
            Phase.PENDING,
            Phase.CREATING,
            Phase.ATTACHING,
            Phase.ATTACHED,
            Phase.DETACHING,
            Phase.DELETING,
            Phase.FAILED,
        }
    ),
    Writer.AGENT: frozenset({Phase.MOUNTING, Phase.READY, Phase.FAILED}),
}

# Which phase may follow which (staying in a phase, to update a reason or timings, is always allowed).
# Any phase but Deleting may go to Detaching: a RuntimeDisk can be deleted at any moment.
_PROVISION: Final[Mapping[Phase, frozenset[Phase]]] = {
    Phase.PENDING: frozenset({Phase.CREATING, Phase.FAILED}),
    Phase.CREATING: frozenset({Phase.ATTACHING, Phase.FAILED}),
    Phase.ATTACHING: frozenset({Phase.ATTACHED, Phase.FAILED}),
    Phase.ATTACHED: frozenset({Phase.MOUNTING, Phase.FAILED}),
    Phase.MOUNTING: frozenset({Phase.READY, Phase.FAILED}),
    Phase.READY: frozenset({Phase.MOUNTING, Phase.FAILED}),  # remount (e.g. after the node rebooted)
    # A Failed disk is retried: by the operator once the cloud cause may be fixed (issue 16), by the agent
    # when its disk is attached again.
    Phase.FAILED: frozenset({Phase.CREATING, Phase.ATTACHING, Phase.MOUNTING}),
    Phase.DETACHING: frozenset({Phase.DELETING}),
    Phase.DELETING: frozenset(),
}
FOLLOWS: Final[Mapping[Phase, frozenset[Phase]]] = {
    phase: nexts | ({Phase.DETACHING} if phase is not Phase.DELETING else frozenset())
    for phase, nexts in _PROVISION.items()
}

# The timing a phase stamps when it is entered (once: a retry keeps the first moment).
STAMPS: Final[Mapping[Phase, str]] = {
    Phase.ATTACHING: "diskCreated",
    Phase.ATTACHED: "attached",
}


class TransitionError(ValueError):
    """A status write that breaks the rules: the wrong writer, or a phase that may not follow."""


def allowed(writer: Writer, current: Phase, new: Phase) -> str | None:
    """Why ``writer`` may not move a RuntimeDisk from ``current`` to ``new``; None when it may."""
    if new is current:
        return None
    if new not in WRITES[writer]:
        return f"the {writer} does not set phase {new}"
    if new not in FOLLOWS[current]:
        return f"phase {new} may not follow {current}"
    return None


def check(writer: Writer, current: Phase, new: Phase) -> None:
    problem = allowed(writer, current, new)
    if problem is not None:
        raise TransitionError(problem)


def operator_retries(status: Mapping[str, Any]) -> bool:
    """A Failed RuntimeDisk the operator tries again: one that failed in the cloud, before it was attached.

    A disk that failed on the node (mount, verification) was attached; the agent owns that failure.
    """
    timings = status.get("timings") or {}
    return status.get("phase") == str(Phase.FAILED) and not timings.get("attached")


def stamp(timings: Mapping[str, Any], key: str, moment: datetime) -> Json:
    """``timings`` with ``key`` set to ``moment`` (sub-second RFC 3339) unless it is already set."""
    if key not in TIMING_FIELDS:
        raise TransitionError(f"status.timings.{key} is not a timing (one of {', '.join(TIMING_FIELDS)})")
    out = dict(timings)
    out.setdefault(key, format_micro_time(moment))
    return out


def advance(
    status: Mapping[str, Any],
    writer: Writer,
    phase: Phase,
    *,
    reason: str,
    message: str,
    now: datetime,
    durations: Mapping[str, float] | None = None,
    timings: Mapping[str, Any] | None = None,
) -> Json:
    """The status after ``writer`` moves it to ``phase``: reason and message replaced, the phase's timing
    stamped once, ``durations`` and ``timings`` added where not already recorded, every other field kept.
    Raises ``TransitionError`` when the rules forbid it."""
    current = Phase(status.get("phase") or Phase.PENDING)
    check(writer, current, phase)
    out = dict(status)
    merged = {**dict(timings or {}), **dict(status.get("timings") or {})}
    if phase in STAMPS and phase is not current:
        merged = stamp(merged, STAMPS[phase], now)
    if durations:
        merged["durationsSeconds"] = {**dict(durations), **dict(merged.get("durationsSeconds") or {})}
    out.update(phase=str(phase), reason=reason, message=message)
    if merged:
        out["timings"] = merged
    return out


def note(status: Mapping[str, Any], *, reason: str, message: str) -> Json:
    """The status with a new reason and message and nothing else changed (a retry in progress)."""
    return {**dict(status), "reason": reason, "message": message}


def created(status: Mapping[str, Any], *, message: str, node_created: str | None) -> Json | None:
    """The first status of a RuntimeDisk just created: Pending, with when its node was created.

    The API server ignores ``status`` in a create (the status subresource), so this is the creator's first
    status write. If the provisioner got there first (it may see the object before this write), only the
    node's creation time is added; None when there is nothing to add.
    """
    timings = dict(status.get("timings") or {})
    if status.get("phase"):
        if node_created is None or timings.get("nodeCreated"):
            return None
        return {**dict(status), "timings": {**timings, "nodeCreated": node_created}}
    out: Json = {**dict(status), "phase": str(Phase.PENDING), "reason": "Created", "message": message}
    if node_created is not None:
        out["timings"] = {**timings, "nodeCreated": node_created}
    return out
