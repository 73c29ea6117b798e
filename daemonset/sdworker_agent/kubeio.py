"""The node agent's Kubernetes I/O: a server-side filtered list+watch of its RuntimeDisks, guarded writes.

The agent reuses the operator's JSON client (``sdworker.kube.client.Kube``) and adds the two things it
lacks: a list that returns the collection's resourceVersion, and a streaming watch. Both pass the label
selector ``sdworker.dev/node=<node>`` to the API server, so each of a thousand agents receives only its own
node's few RuntimeDisks; kopf would filter by label on the client and have every agent stream every
RuntimeDisk of the cluster.

Status writes are read-modify-write with the object's resourceVersion as a precondition, retried on 409,
so the agent never overwrites a phase the operator wrote a moment earlier (or vice versa).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

import aiohttp

from sdworker.api import constants as c
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import RuntimeDiskStatus
from sdworker.kube.client import Json, Kube, KubeError

log = logging.getLogger("sdworker_agent.kube")

COMPONENT: Final = "sdworker-agent"
_STATUS_RETRIES: Final = 8


class WatchExpiredError(Exception):
    """The resourceVersion is too old (410 Gone): list again."""


class NotFoundError(Exception):
    """The object is gone."""


class Stop(Exception):  # noqa: N818 - a control signal, not an error report
    """A status mutation decided not to write (the object moved on); carries why."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Json


class AgentKube(Kube):
    async def list_with_version(self, kind: str, *, label_selector: str) -> tuple[list[Json], str]:
        result = await self.request("GET", self.path(kind), query=[("labelSelector", label_selector)])
        items = cast(list[Json], result.get("items") or [])
        return items, str((result.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(
        self, kind: str, *, label_selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[WatchEvent]:
        """Stream events after ``resource_version`` until the server ends it; 410 -> WatchExpiredError."""
        query = [
            ("watch", "true"),
            ("labelSelector", label_selector),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        api = self._api
        serialized = await api.param_serialize(
            "GET",
            self.path(kind),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        # The server closes the watch after timeout_seconds; the client gives it a margin on top.
        timeout = aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_connect=10)
        response = await api.call_api(*serialized, _request_timeout=timeout)
        raw: aiohttp.ClientResponse = response.response
        try:
            if response.status >= 400:
                body = await raw.read()
                raise_for(response.status, body)
            buffer = b""
            async for chunk in raw.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield parse_event(json.loads(line))
        finally:
            raw.release()

    async def update_status(
        self,
        name: str,
        mutate: Callable[[Json, RuntimeDiskStatus], RuntimeDiskStatus],
    ) -> Json:
        """Read the RuntimeDisk, let ``mutate`` compute its new status, write it if the object did not change.

        ``mutate`` sees the raw object and its parsed status and may raise ``Stop``. Raises ``NotFoundError``.
        """
        for attempt in range(_STATUS_RETRIES):
            obj = await self.get(c.RUNTIMEDISK_KIND, name)
            if obj is None:
                raise NotFoundError(name)
            new = mutate(obj, parse_runtimedisk(obj).status)
            patch = {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": new.to_dict(),
            }
            try:
                return await self.patch(c.RUNTIMEDISK_KIND, name, patch, sub="status")
            except KubeError as exc:
                if exc.status == 404:
                    raise NotFoundError(name) from exc
                if exc.status != 409:
                    raise
                log.debug("RuntimeDisk %s changed under a status write (attempt %d); retrying", name, attempt)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise KubeError(409, "Conflict", f"RuntimeDisk {name}: status kept changing; gave up for now")

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


def parse_event(data: Mapping[str, Any]) -> WatchEvent:
    kind = str(data.get("type", ""))
    obj = cast(Json, data.get("object") or {})
    if kind == "ERROR":
        raise_for(int(obj.get("code") or 500), json.dumps(obj).encode())
    return WatchEvent(kind, obj)


def raise_for(status: int, body: bytes) -> NoReturn:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if status == 410:
        raise WatchExpiredError(data.get("message", "resource version too old"))
    raise KubeError(
        status, str(data.get("reason", "")), str(data.get("message", body[:300].decode(errors="replace")))
    )


def involved(obj: Mapping[str, Any]) -> Json:
    """The involvedObject of an Event about ``obj`` (a RuntimeDisk or the Node, both cluster-scoped)."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
