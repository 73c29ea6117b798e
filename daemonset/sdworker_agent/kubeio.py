"""The node agent's Kubernetes I/O: a server-side filtered list+watch of its RuntimeDisks, guarded writes.

The agent reuses the operator's JSON client (``sdworker.kube.client.Kube``): its list-with-version and
streaming watch carry the label selector ``sdworker.dev/node=<node>`` to the API server, so each of a
thousand agents receives only its own node's few RuntimeDisks; kopf would filter by label on the client
and have every agent stream every RuntimeDisk of the cluster.

Status writes go through the operator's one status updater (``sdworker.kube.status.update_status``):
read-modify-write with the object's resourceVersion as a precondition, retried on 409, so the agent never
overwrites a phase the operator wrote a moment earlier (or vice versa). Here the agent only adds its typed
view: its mutations see the parsed status and return a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from sdworker.api import constants as c
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import RuntimeDiskStatus
from sdworker.kube import status
from sdworker.kube.client import (
    Json,
    Kube,
    WatchEvent,
    WatchExpiredError,
    object_ref,
    parse_event,
    raise_for,
)

__all__ = [
    "AgentKube",
    "NotFoundError",
    "Stop",
    "WatchEvent",
    "WatchExpiredError",
    "parse_event",
    "raise_for",
]

log = logging.getLogger("sdworker_agent.kube")

COMPONENT: Final = "sdworker-agent"
_STATUS_RETRIES: Final = 8


class NotFoundError(Exception):
    """The object is gone."""


class Stop(Exception):  # noqa: N818 - a control signal, not an error report
    """A status mutation decided not to write (the object moved on); carries why."""


class AgentKube(Kube):
    async def update_status(
        self,
        name: str,
        mutate: Callable[[Json, RuntimeDiskStatus], RuntimeDiskStatus],
        *,
        known: Json | None = None,
    ) -> Json:
        """Read the RuntimeDisk, let ``mutate`` compute its new status, write it if the object did not change.

        ``mutate`` sees the raw object and its parsed status and may raise ``Stop``. Raises ``NotFoundError``.
        ``known``: the newest copy the agent holds; the first write is tried from it without a read
        (``sdworker.kube.status.update_status``).
        """

        def new_status(obj: Json) -> Json:
            return mutate(obj, parse_runtimedisk(obj).status).to_dict()

        obj = await status.update_status(
            self, c.RUNTIMEDISK_KIND, name, new_status, attempts=_STATUS_RETRIES, known=known
        )
        if obj is None:
            raise NotFoundError(name)
        return obj

    async def event(self, involved: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Post an Event; a failure to post is logged and swallowed (events are best effort)."""
        try:
            await self.post_event(
                involved,
                type_="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                component=COMPONENT,
            )
        except Exception as exc:
            log.warning("could not post event %s for %s: %s", reason, involved.get("name"), exc)


def involved(obj: Mapping[str, Any]) -> Json:
    """The involvedObject of an Event about ``obj`` (a RuntimeDisk or the Node, both cluster-scoped)."""
    return object_ref(obj)
