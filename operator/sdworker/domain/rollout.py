"""Decide how an SDWorker moves from the runtime it serves to a new one: provision first, roll second.

A runtime change (an edited ``spec.runtime.image`` or a moved image family) must never cost running pods
their runtime or the SDWorker its capacity (issue 14). The steps, each decided here from observations:

1. the *target* is the newly resolved runtime (or the served one, while pinned or while the cloud does not
   answer); placement provisions it on every live node next to the *served* one;
2. the Deployment's template switches to the target only once the target is Ready on every live matching
   node, and stays switched once the observed Deployment has it (no flip-flop); the Deployment then
   replaces one pod at a time (``render``: maxSurge 0, maxUnavailable 1, and the rollout gate);
3. the target becomes the served runtime once the Deployment is complete and no pod of another runtime
   remains; placement then stops wanting the old disks, and teardown retires them node by node once no
   pod bound to the node uses them.

Setting the image back (a rollback) makes the served runtime the target again: the template returns to
it at once, since its disks never left. Pure, so every case is a table row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdworker.api.types import RuntimeStatus


@dataclass(frozen=True)
class Observed:
    """The Deployment as the operator last saw it."""

    runtime_id: str | None = None
    """The runtime of its pod template; None when there is no Deployment yet."""
    replaces: tuple[str, ...] = ()
    """The runtimes its template was rendered to replace (the gate)."""
    complete: bool = False
    """Its controller saw the current generation, and all desired replicas are updated, ready and alone."""


@dataclass(frozen=True)
class Decision:
    served: RuntimeStatus
    target: RuntimeStatus
    template_runtime: str
    replaces: tuple[str, ...]
    paused: bool

    @property
    def rolling(self) -> bool:
        return self.target.runtime_id != self.served.runtime_id


def target_runtime(
    resolved: RuntimeStatus | None,
    *,
    served: RuntimeStatus | None,
    recorded_target: RuntimeStatus | None,
    pinned: bool,
) -> RuntimeStatus | None:
    """The runtime to roll to: the one just resolved; while pinned, or when the lookup failed, the rollout
    already recorded, else the served runtime (a family move then changes nothing)."""
    kept = recorded_target or served
    if pinned and kept is not None:
        return kept
    return resolved if resolved is not None else kept


def decide(
    *,
    served: RuntimeStatus | None,
    target: RuntimeStatus,
    observed: Observed,
    target_ready_everywhere: bool,
    other_runtime_pods: int,
    paused: bool,
) -> Decision:
    """What to render and what to record as served.

    ``target_ready_everywhere``: the target's RuntimeDisk is Ready on every live matching node (and there
    is at least one). ``other_runtime_pods``: pods of this SDWorker whose runtime is not the target.
    """
    if served is None:  # the first runtime: nothing to roll from
        return Decision(target, target, target.runtime_id, (), paused)
    if target.runtime_id == served.runtime_id:
        # Steady, or a rollback: the served runtime is on every node, so its template returns at once.
        replaces = observed.replaces if observed.runtime_id == served.runtime_id else ()
        return Decision(served, target, served.runtime_id, replaces, paused)
    old = {served.runtime_id}
    if observed.runtime_id is not None:
        old.add(observed.runtime_id)
    if observed.runtime_id == target.runtime_id:
        template, replaces = target.runtime_id, observed.replaces
    elif target_ready_everywhere and not paused:
        template, replaces = target.runtime_id, tuple(sorted(old - {target.runtime_id}))
    else:
        template = observed.runtime_id or served.runtime_id
        replaces = observed.replaces if observed.runtime_id == template else ()
    done = observed.runtime_id == target.runtime_id and observed.complete and other_runtime_pods == 0
    return Decision(target if done else served, target, template, replaces, paused)
