"""Status conditions the Kubernetes way, as pure functions with the clock passed in.

Per the API conventions, ``lastTransitionTime`` moves only when a condition's status changes, so a reconcile
loop that recomputes the same conditions every few seconds must not touch it. Getting that right in one
place, with ``now`` injected, keeps status writes idempotent and the rules testable. kopf merge-patches
status, which replaces lists whole, so these functions always return the complete list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from sdworker.api.types import Condition, ConditionStatus

# metav1.Condition's reason validation: CamelCase-ish, no spaces.
REASON_RE: Final = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
REASON_MAX: Final = 1024
MESSAGE_MAX: Final = 32768


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((cond for cond in conditions if cond.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    cond = find(conditions, type_)
    return cond is not None and cond.status is ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[Condition, ...]:
    """Return ``conditions`` with ``type_`` set; its transition time is kept unless ``status`` changed.

    The order of existing conditions is kept and a new type is appended, so repeated calls give equal lists.
    """
    if not REASON_RE.fullmatch(reason) or len(reason) > REASON_MAX:
        raise ValueError(f"condition reason {reason!r} is not UpperCamelCase")
    previous = find(conditions, type_)
    moment = previous.last_transition_time if previous and previous.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:MESSAGE_MAX],
        last_transition_time=moment,
        observed_generation=observed_generation,
    )
    if previous is None:
        return (*conditions, new)
    return tuple(new if cond.type == type_ else cond for cond in conditions)


def merge_conditions(
    previous: Sequence[Condition],
    desired: Iterable[Condition],
    now: datetime,
) -> tuple[Condition, ...]:
    """Apply every desired condition on top of ``previous`` (their own transition times are ignored).

    Conditions in ``previous`` whose type is not desired are kept: other writers may own them.
    """
    result = tuple(previous)
    for cond in desired:
        result = set_condition(
            result,
            type_=cond.type,
            status=cond.status,
            reason=cond.reason,
            message=cond.message,
            now=now,
            observed_generation=cond.observed_generation,
        )
    return result
