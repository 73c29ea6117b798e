"""Conditions follow the Kubernetes API conventions on transition times and generations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sdworker.api import conditions
from sdworker.api.types import Condition, ConditionStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


def ready(status: ConditionStatus, reason: str = "R", at: datetime = T0, generation: int = 1) -> Condition:
    return Condition("Ready", status, reason, "m", at, generation)


@pytest.mark.parametrize(
    ("previous", "status", "reason", "expected_time"),
    [
        ((), TRUE, "R", T1),
        ((ready(TRUE),), TRUE, "R", T0),
        ((ready(TRUE),), TRUE, "OtherReason", T0),
        ((ready(TRUE),), FALSE, "R", T1),
        ((ready(FALSE),), TRUE, "R", T1),
    ],
    ids=["new", "unchanged", "reason-only", "true-to-false", "false-to-true"],
)
def test_transition_time_moves_only_when_status_changes(
    previous: tuple[Condition, ...], status: ConditionStatus, reason: str, expected_time: datetime
) -> None:
    result = conditions.set_condition(
        previous, type_="Ready", status=status, reason=reason, message="new", now=T1, observed_generation=2
    )
    (cond,) = result
    assert cond.last_transition_time == expected_time
    assert (cond.status, cond.reason, cond.message, cond.observed_generation) == (status, reason, "new", 2)


def test_other_conditions_keep_their_place() -> None:
    degraded = Condition("Degraded", FALSE, "AsExpected", "", T0)
    result = conditions.set_condition(
        (degraded, ready(TRUE)), type_="Ready", status=FALSE, reason="Lost", message="", now=T1
    )
    assert [cond.type for cond in result] == ["Degraded", "Ready"]
    assert result[0] is degraded


def test_merge_applies_desired_and_keeps_foreign_types() -> None:
    foreign = Condition("SomeoneElse", TRUE, "Theirs", "", T0)
    desired = [Condition("Ready", TRUE, "Ok", "", datetime(1999, 1, 1, tzinfo=UTC), 3)]
    result = conditions.merge_conditions((foreign, ready(TRUE)), desired, T1)
    assert result[0] is foreign
    assert result[1] == Condition("Ready", TRUE, "Ok", "", T0, 3)


@pytest.mark.parametrize("reason", ["", "has space", "trailing-dash-", "9Lives"])
def test_reasons_must_be_camel_case(reason: str) -> None:
    with pytest.raises(ValueError, match="UpperCamelCase"):
        conditions.set_condition((), type_="Ready", status=TRUE, reason=reason, message="", now=T0)


def test_find_and_is_true() -> None:
    conds = (ready(TRUE), Condition("Degraded", FALSE, "AsExpected", "", T0))
    assert conditions.find(conds, "Degraded") is conds[1]
    assert conditions.find(conds, "Missing") is None
    assert conditions.is_true(conds, "Ready")
    assert not conditions.is_true(conds, "Degraded")
    assert not conditions.is_true(conds, "Missing")


def test_condition_serialises_like_metav1() -> None:
    moment = datetime(2025, 1, 1, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    assert ready(TRUE, at=moment).to_dict() == {
        "type": "Ready",
        "status": "True",
        "reason": "R",
        "message": "m",
        "lastTransitionTime": "2024-12-31T23:02:03Z",
        "observedGeneration": 1,
    }


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ready(TRUE, at=datetime(2025, 1, 1)).to_dict()
