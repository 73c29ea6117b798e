"""The leadership gate: the operator's own loops work only in the active replica.

kopf's peering pauses kopf's watchers and handlers in a standby replica, not the controller's work queues,
resync, orphan sweep or warm-pool refill, which would go on acting on a stale cache (split brain). So
every work function of those queues first awaits a ``Gate``: always open in a standalone operator; with
``--peering``, ``PeeringWatcher`` reads the ClusterKopfPeering object every few seconds and opens or closes
the gate by kopf's own rule (``domain.leadership.is_active``). Closed, work waits and its keys stay queued,
so nothing is lost; the change is logged and exported as the ``sdworker_leader`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from sdworker.domain.leadership import is_active, parse_peers
from sdworker.kube.client import Kube

log = logging.getLogger("sdworker.leadership")
PEERING_KIND: Final = "ClusterKopfPeering"
POLL_SECONDS: Final = 2.0


class Gate:
    """Open while this replica may act; ``wait`` returns at once when open, else when it opens."""

    def __init__(self, *, open_: bool = True, on_change: Callable[[bool], None] | None = None) -> None:
        self._open = asyncio.Event()
        self._on_change = on_change
        if open_:
            self._open.set()

    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        await self._open.wait()

    def set(self, open_: bool) -> bool:
        """Open or close the gate; whether that changed it."""
        if open_ == self.is_open():
            return False
        if open_:
            self._open.set()
        else:
            self._open.clear()
        if self._on_change is not None:
            self._on_change(open_)
        return True


class PeeringWatcher:
    """Keeps ``gate`` open iff replica ``identity`` (kopf priority ``priority``) is the active one in the
    ClusterKopfPeering ``name``. An unreadable or missing object closes the gate: better idle than twice."""

    def __init__(
        self,
        kube: Kube,
        gate: Gate,
        *,
        name: str,
        identity: str,
        priority: int,
        poll_seconds: float = POLL_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.gate = gate
        self.name = name
        self.identity = identity
        self.priority = priority
        self.poll_seconds = poll_seconds
        self.now = now
        self._problem = ""

    async def check(self) -> bool:
        """Read the peering object once and set the gate; whether this replica is active."""
        try:
            obj = await self.kube.get(PEERING_KIND, self.name)
            problem = "" if obj is not None else "missing"
        except Exception as err:  # whatever the reason, a replica that cannot tell must not act
            obj, problem = None, f"unreadable ({err})"
        if problem and problem != self._problem:
            log.warning("ClusterKopfPeering %s is %s: standing by", self.name, problem)
        self._problem = problem
        active = obj is not None and is_active(
            parse_peers(obj.get("status")),
            self.identity,
            self.priority,
            self.now(),
            # The own heartbeat must outlive the next check, or another replica may take over before it.
            margin=self.poll_seconds,
        )
        if self.gate.set(active):
            log.info(
                "replica %s (priority %d) is now %s",
                self.identity,
                self.priority,
                "active" if active else "standing by",
            )
        return active

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.poll_seconds)
