"""Async access to the Kubernetes API as plain JSON, for the operator's reconcilers.

Owns connecting (in-cluster service account or a kubeconfig), the table of resource paths the
operator touches, server-side apply of rendered children, merge patches (including the status
subresource), deletes and Events. Objects are the dicts the pure layers render and parse, so no
generated model classes leak into decisions. kopf watches; this client writes.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Self, cast
from urllib.parse import quote

import aiohttp
from kubernetes.aio import client as aioclient
from kubernetes.aio import config as aioconfig

log = logging.getLogger("sdworker.kube")
FIELD_MANAGER = "sdworker"
Json = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


KINDS: Mapping[str, Kind] = {
    k.kind: k
    for k in (
        Kind("v1", "Node", "nodes", namespaced=False),
        Kind("v1", "Service", "services", namespaced=True),
        Kind("v1", "Event", "events", namespaced=True),
        Kind("v1", "Pod", "pods", namespaced=True),
        Kind("apps/v1", "Deployment", "deployments", namespaced=True),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", namespaced=True),
        Kind("sdworker.dev/v1alpha1", "SDWorker", "sdworkers", namespaced=True),
        Kind("sdworker.dev/v1alpha1", "RuntimeDisk", "runtimedisks", namespaced=False),
        Kind("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False),
    )
}


class KubeError(Exception):
    """An API error with the server's status code and reason (``Conflict``, ``NotFound``...)."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # The server's Retry-After (429 from priority and fairness, 503...): the work queue's back-off floor.
        self.retry_after = retry_after


def _error(status: int, raw: bytes, retry_after: str | None) -> KubeError:
    """A ``KubeError`` from an error answer: a Status object, or the plain text the API server's priority and
    fairness filter answers 429 with ("Too many requests, please try again later.")."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    try:
        after = float(retry_after) if retry_after else None
    except ValueError:
        after = None
    reason = str(data.get("reason") or ("TooManyRequests" if status == 429 else ""))
    return KubeError(
        status, reason, str(data.get("message") or raw.decode(errors="replace")), retry_after=after
    )


class WatchExpiredError(Exception):
    """The resourceVersion is too old (410 Gone): list again."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Json


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


def parse_event(data: Mapping[str, Any]) -> WatchEvent:
    kind = str(data.get("type", ""))
    obj = cast(Json, data.get("object") or {})
    if kind == "ERROR":
        raise_for(int(obj.get("code") or 500), json.dumps(obj).encode())
    return WatchEvent(kind, obj)


def object_ref(obj: Mapping[str, Any]) -> Json:
    """The involvedObject / ownerReference identity of ``obj``."""
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class Kube:
    def __init__(self, api: aioclient.ApiClient) -> None:
        self._api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Self:
        """In a pod, the pod's ServiceAccount; otherwise ``kubeconfig`` or $KUBECONFIG."""
        configuration = aioclient.Configuration()
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            aioconfig.load_incluster_config(client_configuration=configuration)
        else:
            await aioconfig.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(aioclient.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    # --- paths -------------------------------------------------------------------------------

    @staticmethod
    def path(kind: str, name: str | None = None, namespace: str | None = None, sub: str | None = None) -> str:
        k = KINDS[kind]
        parts = [k.prefix]
        if k.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(k.plural)
        if name:
            parts.append(quote(name))
        if sub:
            parts.append(sub)
        return "/".join(parts)

    # --- verbs -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
    ) -> Json:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = await self._api.param_serialize(
            method,
            path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = await self._api.call_api(*serialized)
        raw = await response.read()
        if response.status >= 400:
            raise _error(response.status, raw, response.getheader("Retry-After"))
        return cast(Json, json.loads(raw) if raw else {})

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Json | None:
        try:
            return await self.request("GET", self.path(kind, name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, kind: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[Json]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = await self.request("GET", self.path(kind, namespace=namespace), query=query)
        return cast(list[Json], result.get("items", []))

    async def list_with_version(self, kind: str, *, label_selector: str) -> tuple[builtins.list[Json], str]:
        """The items and the collection's resourceVersion, to start a watch from."""
        result = await self.request("GET", self.path(kind), query=[("labelSelector", label_selector)])
        items = cast(builtins.list[Json], result.get("items") or [])
        return items, str((result.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(
        self, kind: str, *, label_selector: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[WatchEvent]:
        """Stream events after ``resource_version`` until the server ends it; 410 -> WatchExpiredError.

        The selector is applied by the API server, so a watcher receives only its own objects.
        """
        query = [
            ("watch", "true"),
            ("labelSelector", label_selector),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        serialized = await self._api.param_serialize(
            "GET",
            self.path(kind),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        # The server closes the watch after timeout_seconds; the client gives it a margin on top.
        timeout = aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_connect=10)
        response = await self._api.call_api(*serialized, _request_timeout=timeout)
        raw: aiohttp.ClientResponse = response.response
        try:
            if response.status >= 400:
                raise_for(response.status, await raw.read())
            buffer = b""
            async for chunk in raw.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield parse_event(json.loads(line))
        finally:
            raw.release()

    async def apply(self, manifest: Mapping[str, Any]) -> Json:
        """Server-side apply: we own exactly the fields we render; others' fields survive."""
        meta = manifest["metadata"]
        return await self.request(
            "PATCH",
            self.path(manifest["kind"], meta["name"], meta.get("namespace")),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=manifest,
            content_type="application/apply-patch+yaml",
        )

    async def create(self, manifest: Mapping[str, Any]) -> Json | None:
        """Create; ``None`` if it already exists (creation is idempotent by name)."""
        meta = manifest["metadata"]
        try:
            return await self.request(
                "POST", self.path(manifest["kind"], namespace=meta.get("namespace")), body=manifest
            )
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    async def patch(
        self,
        kind: str,
        name: str,
        patch: object,
        *,
        namespace: str | None = None,
        sub: str | None = None,
        json_patch: bool = False,
    ) -> Json:
        return await self.request(
            "PATCH",
            self.path(kind, name, namespace, sub),
            body=patch,
            content_type="application/json-patch+json" if json_patch else "application/merge-patch+json",
        )

    async def replace_status(self, obj: Mapping[str, Any]) -> Json:
        """Replace ``obj``'s status subresource; its metadata.resourceVersion makes it a compare-and-set
        (409 Conflict when the object changed since it was read). ``kube.status.update_status`` uses it."""
        meta = obj["metadata"]
        return await self.request(
            "PUT", self.path(obj["kind"], meta["name"], meta.get("namespace"), "status"), body=dict(obj)
        )

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete in the background; ``False`` if it was already gone."""
        try:
            await self.request(
                "DELETE",
                self.path(kind, name, namespace),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def remove_finalizers(self, obj: Mapping[str, Any], finalizers: Sequence[str]) -> None:
        """Drop ``finalizers`` guarded by resourceVersion, so other controllers' finalizers survive."""
        meta = obj["metadata"]
        current: list[str] = list(meta.get("finalizers") or [])
        keep = [f for f in current if f not in finalizers]
        if keep == current:
            return
        await self.patch(
            obj["kind"],
            meta["name"],
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                {"op": "replace", "path": "/metadata/finalizers", "value": keep},
            ],
            namespace=meta.get("namespace"),
            json_patch=True,
        )

    async def post_event(
        self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str, component: str
    ) -> bool:
        """Post an Event; best effort (False if refused), so a reconcile never fails over an Event,
        e.g. for an object in a namespace that is being deleted."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = involved.get("namespace") or "default"
        try:
            await self._post_event(
                involved, namespace, now, type_=type_, reason=reason, message=message, component=component
            )
        except KubeError as exc:
            log.warning("could not post Event %s for %s: %s", reason, involved.get("name"), exc)
            return False
        return True

    async def _post_event(
        self,
        involved: Mapping[str, Any],
        namespace: str,
        now: str,
        *,
        type_: str,
        reason: str,
        message: str,
        component: str,
    ) -> None:
        await self.request(
            "POST",
            self.path("Event", namespace=namespace),
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
                "involvedObject": dict(involved),
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": component},
                "reportingComponent": component,
                "reportingInstance": component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )
