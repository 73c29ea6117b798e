"""Leadership among operator replicas: the peering priorities, kopf's rule as ``is_active``, and the gate.

The peering object's status is written by kopf's own ``Peer.as_dict`` (kopf ``_core/engines/peering.py``,
the producer of what ``parse_peers`` reads), and every row of the table is also decided by kopf's own
``process_peering_event``, whose pause toggle ``is_active`` must mirror.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.engines import peering

from sdworker.domain.leadership import (
    PRIORITY_MAX,
    TIEBREAKS,
    is_active,
    oldest_wins,
    parse_peers,
)
from sdworker.leadership import Gate
from sdworker.workqueue import WorkQueue

NOW = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
ME = "replica-a"
LIMIT = 10.0


def heartbeat(priority: int, age: float, lifetime: int = 60) -> dict[str, Any]:
    """One replica's status entry as kopf's keepalive writes it, last written ``age`` seconds ago."""
    seen = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)).isoformat()
    return peering.Peer(
        identity=peering.Identity("x"), priority=priority, lifetime=lifetime, lastseen=seen
    ).as_dict()


def kopf_pauses(status: dict[str, Any], identity: str, priority: int) -> bool:
    """kopf's own decision for replica ``identity``: whether ``process_peering_event`` pauses it."""
    settings = kopf.OperatorSettings()
    settings.peering.name = "sdworker"
    settings.peering.priority = priority
    paused = aiotoggles.Toggle()
    woken = asyncio.Event()
    woken.set()  # the event's re-check sleep returns at once

    async def decide() -> bool:
        await peering.process_peering_event(
            raw_event={"type": "MODIFIED", "object": {"metadata": {"name": "sdworker"}, "status": status}},
            namespace=None,
            resource=None,  # type: ignore[arg-type]  # unused without autoclean
            identity=peering.Identity(identity),
            settings=settings,
            autoclean=False,
            stream_pressure=woken,
            conflicts_found=paused,
        )
        return paused.is_on()

    return asyncio.run(decide())


# (other peers: (priority, seconds since their last heartbeat, lifetime)), my priority, active?
TABLE = [
    ([], 5, True),  # alone
    ([(3, 10, 60)], 5, True),  # a lower live peer
    ([(7, 10, 60)], 5, False),  # a higher live peer
    ([(5, 10, 60)], 5, False),  # the same priority: kopf pauses everyone
    ([(7, 61, 60)], 5, True),  # a higher peer past its lifetime is dead
    ([(5, 90, 60)], 5, True),  # so is an equal one
    ([(7, 30, 20)], 5, True),  # its own lifetime counts, not ours
    ([(3, 1, 60), (4, 1, 60)], 5, True),
    ([(3, 1, 60), (9, 1, 60)], 5, False),
    ([(3, 1, 60), (9, 70, 60)], 5, True),
    ([(0, 1, 60)], 0, False),  # kopf's default priority 0 on both: the bug this module fixes
]


@pytest.mark.parametrize(("others", "mine", "expected"), TABLE)
def test_is_active_is_kopfs_rule(others: list[tuple[int, float, int]], mine: int, expected: bool) -> None:
    status = {f"peer-{i}": heartbeat(*peer) for i, peer in enumerate(others)}
    status[ME] = heartbeat(mine, 1)
    now = dt.datetime.now(dt.UTC)
    assert is_active(parse_peers(status), ME, mine, now) is expected
    assert kopf_pauses(status, ME, mine) is not expected


@pytest.mark.parametrize(
    ("mine", "margin", "expected"),
    [
        (None, 0.0, False),  # not (yet) in the peering: kopf has not announced this replica
        ((5, 61, 60), 0.0, False),  # own heartbeat expired: the others may have taken over
        ((5, 57, 60), 4.0, False),  # it expires before the next check
        ((5, 50, 60), 4.0, True),
    ],
)
def test_a_replica_acts_only_while_its_own_heartbeat_is_live(
    mine: tuple[int, float, int] | None, margin: float, expected: bool
) -> None:
    status = {"peer-0": heartbeat(3, 1)}
    if mine is not None:
        status[ME] = heartbeat(*mine)
    assert is_active(parse_peers(status), ME, 5, dt.datetime.now(dt.UTC), margin=margin) is expected


def test_parse_peers_reads_kopfs_entries_and_skips_removed_or_broken_ones() -> None:
    status = {
        "a": heartbeat(7, 0, lifetime=30),
        "gone": None,  # kopf's keepalive removes a peer by writing null
        "junk": {"priority": "high", "lastseen": "yesterday"},
        "text": "not a heartbeat",
    }
    (peer,) = parse_peers(status)
    assert (peer.identity, peer.priority, peer.lifetime) == ("a", 7, 30.0)
    assert peer.live(dt.datetime.now(dt.UTC))
    assert parse_peers(None) == []


def test_the_older_replica_outranks_the_newer() -> None:
    start = int(NOW.timestamp() * 1000)
    older = [oldest_wins(start, t) for t in (0, TIEBREAKS - 1)]
    newer = [oldest_wins(start + 1, t) for t in (0, TIEBREAKS - 1)]
    assert min(older) > max(newer)
    # Two replicas of the same millisecond still differ (kopf breaks no ties).
    assert oldest_wins(start, 1) != oldest_wins(start, 2)


@pytest.mark.parametrize("year", [1970, 2026, 2100, 2250])
def test_priorities_are_positive_and_exact_json_numbers(year: int) -> None:
    start = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    for tiebreak in (0, TIEBREAKS - 1):
        priority = oldest_wins(start, tiebreak)
        assert 0 < priority <= PRIORITY_MAX
        assert int(float(priority)) == priority


@pytest.mark.parametrize(("start", "tiebreak"), [(0, -1), (0, TIEBREAKS), (-1, 0), (2**53, 0)])
def test_oldest_wins_refuses_what_it_cannot_order(start: int, tiebreak: int) -> None:
    with pytest.raises(ValueError, match=r"tiebreak|start time"):
        oldest_wins(start, tiebreak)


# --- the gate in front of a work queue -----------------------------------------------------------------


def test_a_closed_gate_holds_the_queues_work_and_loses_no_key() -> None:
    async def main() -> list[str]:
        changes: list[bool] = []
        gate = Gate(open_=False, on_change=changes.append)
        done: list[str] = []
        finished = asyncio.Event()

        async def work(key: str) -> None:
            done.append(key)
            if len(set(done)) == 3:
                finished.set()

        arrived: list[int] = []
        both_at_gate = asyncio.Event()

        async def gated() -> None:
            arrived.append(1)
            if len(arrived) == 2:
                both_at_gate.set()
            await gate.wait()

        queue: WorkQueue[str] = WorkQueue(work, name="gated", concurrency=2, gate=gated)
        runner = asyncio.create_task(queue.run())
        for key in ("a", "b", "c", "a"):
            queue.add(key)
        await both_at_gate.wait()  # each worker holds a key, waiting
        assert done == []
        assert queue.pending() + queue.busy() == 3
        assert gate.set(True)
        assert not gate.set(True)  # no change, no second notice
        await finished.wait()
        assert changes == [True]
        await queue.close()
        await runner
        return done

    done = asyncio.run(asyncio.wait_for(main(), LIMIT))
    assert sorted(set(done)) == ["a", "b", "c"]
