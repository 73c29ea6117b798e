"""RuntimeDisk phase transitions: who may set which phase after which, and the timing stamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sdworker.api.transitions import (
    FOLLOWS,
    TransitionError,
    Writer,
    advance,
    allowed,
    note,
    operator_retries,
    stamp,
)
from sdworker.api.types import Phase

P = Phase
OP, AGENT = Writer.OPERATOR, Writer.AGENT
NOW = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.mark.parametrize(
    ("writer", "current", "new", "problem"),
    [
        # the operator's path through the cloud
        (OP, P.PENDING, P.CREATING, None),
        (OP, P.CREATING, P.ATTACHING, None),
        (OP, P.ATTACHING, P.ATTACHED, None),
        (OP, P.ATTACHING, P.ATTACHING, None),  # a retry note keeps the phase
        (OP, P.PENDING, P.FAILED, None),
        (OP, P.FAILED, P.CREATING, None),  # retried once the cloud cause may be fixed
        (OP, P.READY, P.DETACHING, None),  # deleted at any moment
        (OP, P.DETACHING, P.DELETING, None),
        # the agent's
        (AGENT, P.ATTACHED, P.MOUNTING, None),
        (AGENT, P.MOUNTING, P.READY, None),
        (AGENT, P.MOUNTING, P.FAILED, None),
        (AGENT, P.READY, P.MOUNTING, None),  # remount after a reboot
        (AGENT, P.FAILED, P.MOUNTING, None),
        # refused: the wrong writer
        (OP, P.ATTACHED, P.MOUNTING, "the operator does not set phase Mounting"),
        (OP, P.MOUNTING, P.READY, "the operator does not set phase Ready"),
        (AGENT, P.PENDING, P.CREATING, "the agent does not set phase Creating"),
        (AGENT, P.READY, P.DETACHING, "the agent does not set phase Detaching"),
        # refused: out of order
        (OP, P.PENDING, P.ATTACHED, "phase Attached may not follow Pending"),
        (OP, P.READY, P.ATTACHING, "phase Attaching may not follow Ready"),
        (OP, P.DELETING, P.DETACHING, "phase Detaching may not follow Deleting"),
        (OP, P.DETACHING, P.CREATING, "phase Creating may not follow Detaching"),
        (AGENT, P.ATTACHING, P.MOUNTING, "phase Mounting may not follow Attaching"),
        (AGENT, P.DELETING, P.READY, "phase Ready may not follow Deleting"),
    ],
)
def test_who_may_set_which_phase_after_which(
    writer: Writer, current: Phase, new: Phase, problem: str | None
) -> None:
    assert allowed(writer, current, new) == problem


def test_every_phase_has_its_successors_and_only_deleting_cannot_be_detached() -> None:
    assert set(FOLLOWS) == set(Phase)
    assert [p for p in Phase if P.DETACHING not in FOLLOWS[p] and p is not P.DETACHING] == [P.DELETING]


def test_advance_stamps_the_phase_timing_once_and_keeps_everything_else() -> None:
    created = advance({}, OP, P.CREATING, reason="CreatingDisk", message="m", now=NOW)
    assert created == {"phase": "Creating", "reason": "CreatingDisk", "message": "m"}
    attaching = advance(
        {**created, "timings": {"nodeCreated": "2026-11-30T01:00:00Z"}, "devicePath": "/dev/x"},
        OP,
        P.ATTACHING,
        reason="AttachingDisk",
        message="",
        now=NOW,
    )
    assert attaching == {
        "phase": "Attaching",
        "reason": "AttachingDisk",
        "message": "",
        "devicePath": "/dev/x",
        "timings": {"nodeCreated": "2026-11-30T01:00:00Z", "diskCreated": "2026-11-30T01:02:03.456789Z"},
    }
    later = datetime(2026, 11, 30, 2, tzinfo=UTC)
    again = advance(attaching, OP, P.ATTACHING, reason="QuotaExceeded", message="retrying", now=later)
    assert again["timings"] == attaching["timings"]  # staying in a phase stamps nothing
    attached = advance(
        again, OP, P.ATTACHED, reason="Attached", message="", now=later, durations={"attach": 1.5}
    )
    assert attached["timings"]["attached"] == "2026-11-30T02:00:00.000000Z"
    assert attached["timings"]["diskCreated"] == "2026-11-30T01:02:03.456789Z"
    assert attached["timings"]["durationsSeconds"] == {"attach": 1.5}


def test_advance_refuses_a_forbidden_transition_naming_it() -> None:
    with pytest.raises(TransitionError, match="phase Attached may not follow Pending"):
        advance({}, OP, P.ATTACHED, reason="Attached", message="", now=NOW)


def test_timings_given_at_a_write_never_overwrite_recorded_ones() -> None:
    status = {"phase": "Pending", "timings": {"nodeCreated": "2026-11-30T00:00:00Z"}}
    out = advance(
        status,
        OP,
        P.CREATING,
        reason="r",
        message="",
        now=NOW,
        timings={"nodeCreated": "2026-11-30T09:00:00Z"},
    )
    assert out["timings"] == {"nodeCreated": "2026-11-30T00:00:00Z"}


def test_stamp_takes_only_timing_keys_and_sub_second_times() -> None:
    assert stamp({}, "mounted", NOW) == {"mounted": "2026-11-30T01:02:03.456789Z"}
    assert stamp({"mounted": "x"}, "mounted", NOW) == {"mounted": "x"}
    with pytest.raises(TransitionError, match=r"status.timings.mountedAt is not a timing"):
        stamp({}, "mountedAt", NOW)


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        ({"phase": "Failed", "reason": "PermissionDenied"}, True),
        ({"phase": "Failed", "reason": "QuotaExceeded", "timings": {"diskCreated": "t"}}, True),
        ({"phase": "Failed", "reason": "DigestMismatch", "timings": {"attached": "t"}}, False),  # the agent's
        ({"phase": "Attaching", "reason": "QuotaExceeded"}, False),
        ({}, False),
    ],
)
def test_the_operator_retries_only_failures_before_attach(status: dict[str, object], retried: bool) -> None:
    assert operator_retries(status) is retried


def test_note_changes_reason_and_message_only() -> None:
    status = {"phase": "Creating", "reason": "CreatingDisk", "message": "", "timings": {"nodeCreated": "t"}}
    assert note(status, reason="RateLimited", message="slow (retrying)") == {
        **status,
        "reason": "RateLimited",
        "message": "slow (retrying)",
    }
