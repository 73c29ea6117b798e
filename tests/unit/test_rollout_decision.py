"""Provision first, roll second, retire last (issue 14): the rollout decision, one case per row."""

from __future__ import annotations

import pytest

from sdworker.api.types import RuntimeStatus
from sdworker.domain.rollout import Observed, decide, target_runtime

V1 = RuntimeStatus("projects/p/global/images/sd-1", "sha256:1", "sd-1-00000001")
V2 = RuntimeStatus("projects/p/global/images/sd-2", "sha256:2", "sd-2-00000002")
V3 = RuntimeStatus("projects/p/global/images/sd-3", "sha256:3", "sd-3-00000003")


def test_the_first_runtime_is_served_at_once() -> None:
    d = decide(
        served=None,
        target=V1,
        observed=Observed(),
        target_ready_everywhere=False,
        other_runtime_pods=0,
        paused=False,
    )
    assert (d.served, d.template_runtime, d.replaces, d.rolling) == (V1, V1.runtime_id, (), False)


@pytest.mark.parametrize(
    ("observed", "ready", "others", "paused", "template", "replaces", "served"),
    [
        # Provision first: the template waits until the target is Ready on every live node.
        (Observed(V1.runtime_id), False, 0, False, V1.runtime_id, (), V1),
        # Roll second: then it switches, gated against the runtime it replaces.
        (Observed(V1.runtime_id), True, 0, False, V2.runtime_id, (V1.runtime_id,), V1),
        # Once the Deployment has it, it keeps it even if a node loses the target (no flip-flop).
        (Observed(V2.runtime_id, (V1.runtime_id,)), False, 0, False, V2.runtime_id, (V1.runtime_id,), V1),
        # Complete, but a pod of v1 still terminates: v1 is still served.
        (
            Observed(V2.runtime_id, (V1.runtime_id,), complete=True),
            True,
            1,
            False,
            V2.runtime_id,
            (V1.runtime_id,),
            V1,
        ),
        # Complete and alone: v2 is served now (placement then retires v1).
        (
            Observed(V2.runtime_id, (V1.runtime_id,), complete=True),
            True,
            0,
            False,
            V2.runtime_id,
            (V1.runtime_id,),
            V2,
        ),
        # Paused before the switch: the template holds.
        (Observed(V1.runtime_id), True, 0, True, V1.runtime_id, (), V1),
    ],
)
def test_rolling_from_v1_to_v2(
    observed: Observed,
    ready: bool,
    others: int,
    paused: bool,
    template: str,
    replaces: tuple[str, ...],
    served: RuntimeStatus,
) -> None:
    d = decide(
        served=V1,
        target=V2,
        observed=observed,
        target_ready_everywhere=ready,
        other_runtime_pods=others,
        paused=paused,
    )
    assert (d.template_runtime, d.replaces, d.served, d.paused) == (template, replaces, served, paused)
    assert d.rolling is (served == V1)


def test_a_rollback_returns_to_the_served_template_at_once() -> None:
    observed = Observed(V2.runtime_id, (V1.runtime_id,))
    d = decide(
        served=V1,
        target=V1,
        observed=observed,
        target_ready_everywhere=False,
        other_runtime_pods=3,
        paused=False,
    )
    assert (d.template_runtime, d.replaces, d.rolling) == (V1.runtime_id, (), False)


def test_a_third_runtime_mid_rollout_gates_against_both_older_ones() -> None:
    observed = Observed(V2.runtime_id, (V1.runtime_id,))
    waiting = decide(
        served=V1,
        target=V3,
        observed=observed,
        target_ready_everywhere=False,
        other_runtime_pods=0,
        paused=False,
    )
    assert waiting.template_runtime == V2.runtime_id
    switched = decide(
        served=V1,
        target=V3,
        observed=observed,
        target_ready_everywhere=True,
        other_runtime_pods=0,
        paused=False,
    )
    assert (switched.template_runtime, switched.replaces) == (V3.runtime_id, (V1.runtime_id, V2.runtime_id))


@pytest.mark.parametrize(
    ("resolved", "recorded_target", "pinned", "expected"),
    [
        (V2, None, False, V2),  # the family moved: roll to it
        (None, None, False, V1),  # the lookup failed: keep serving v1
        (None, V2, False, V2),  # the lookup failed mid-rollout: keep rolling to v2
        (V2, None, True, V1),  # pinned: a family move changes nothing
        (V3, V2, True, V2),  # pinned mid-rollout: finish the rollout already started, not the newer one
    ],
)
def test_the_target(
    resolved: RuntimeStatus | None,
    recorded_target: RuntimeStatus | None,
    pinned: bool,
    expected: RuntimeStatus,
) -> None:
    assert target_runtime(resolved, served=V1, recorded_target=recorded_target, pinned=pinned) == expected
