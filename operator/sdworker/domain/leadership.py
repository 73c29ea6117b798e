"""Which operator replica may act: kopf's peering rule, as a pure function, and the replicas' priorities.

With more than one replica (the chart's HA install, ``--peering``) kopf keeps every replica's heartbeat in a
ClusterKopfPeering object's status and pauses its own watchers and handlers in every replica but one. The
operator's own loops (work queues, resync, orphan sweep, warm-pool refill) are not kopf's, so the operator
decides the same question itself, from the same object, with the same rule (kopf 1.45
``_core/engines/peering.py``, ``process_peering_event``): a replica is active iff no live peer (one whose
``lastseen + lifetime`` lies ahead) has a higher or the same priority; peers of equal priority all pause.
One addition: a replica counts as active only while its own heartbeat is live for ``margin`` more seconds,
so a replica whose keepalives stop reaching the API server stops before the others take over.

kopf breaks no ties, so every replica needs its own priority, yet a Deployment's pods all get the same
arguments: ``oldest_wins`` derives one from the process's start time, the older replica the higher.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# kopf's peering priorities are JSON numbers in the object's status: stay exact as a float64 (< 2**53).
PRIORITY_MAX: Final = 2**53 - 1
# Distinct random low-order values for replicas started in the same millisecond.
TIEBREAKS: Final = 1000
DEFAULT_LIFETIME: Final = 60  # kopf's Peer default, seconds


@dataclass(frozen=True)
class Peer:
    """One replica's heartbeat in the peering object's status (kopf's ``Peer.as_dict``)."""

    identity: str
    priority: int
    lastseen: dt.datetime
    lifetime: float

    def live(self, now: dt.datetime, margin: float = 0.0) -> bool:
        """Alive at ``now`` (kopf: ``lastseen + lifetime`` ahead), with ``margin`` seconds to spare."""
        return self.lastseen + dt.timedelta(seconds=self.lifetime - margin) > now


def oldest_wins(start_epoch_ms: int, tiebreak: int) -> int:
    """The peering priority of a replica started at ``start_epoch_ms``: an older replica always outranks a
    newer one (the order of start milliseconds is kept exactly, ``tiebreak`` in [0, TIEBREAKS) only orders
    replicas started in the same millisecond). Positive and at most ``PRIORITY_MAX`` until the year 2255."""
    if not 0 <= tiebreak < TIEBREAKS:
        raise ValueError(f"tiebreak must be in [0, {TIEBREAKS}), not {tiebreak}")
    if start_epoch_ms < 0:
        raise ValueError(f"start time must not be before 1970, not {start_epoch_ms} ms")
    priority = PRIORITY_MAX - start_epoch_ms * TIEBREAKS - tiebreak
    if priority <= 0:
        raise ValueError(f"start time {start_epoch_ms} ms is past the priorities' range")
    return priority


def parse_peers(status: Mapping[str, Any] | None) -> list[Peer]:
    """The heartbeats in a ClusterKopfPeering's ``status`` (identity -> priority, lifetime, lastseen); an
    entry that is not one (kopf writes ``null`` to remove a peer) is skipped."""
    peers = []
    for identity, info in (status or {}).items():
        if not isinstance(info, Mapping) or not isinstance(info.get("lastseen"), str):
            continue
        try:
            lastseen = dt.datetime.fromisoformat(info["lastseen"])
            priority = int(info.get("priority", 0))
            lifetime = float(info.get("lifetime", DEFAULT_LIFETIME))
        except (TypeError, ValueError):
            continue
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=dt.UTC)
        peers.append(Peer(str(identity), priority, lastseen, lifetime))
    return peers


def is_active(
    peers: list[Peer], identity: str, priority: int, now: dt.datetime, *, margin: float = 0.0
) -> bool:
    """Whether replica ``identity`` of ``priority`` may act: its own heartbeat is live ``margin`` seconds
    ahead, and no other live peer has a higher or the same priority (kopf's ``process_peering_event``)."""
    me = [p for p in peers if p.identity == identity]
    if not me or not me[0].live(now, margin):
        return False
    return not any(p.identity != identity and p.live(now) and p.priority >= priority for p in peers)
