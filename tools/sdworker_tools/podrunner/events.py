"""Events and status writes as the kubelet makes them, through the kubernetes client.

Events carry ``source.component: kubelet`` and the node as host, like the kubelet's recorder; a repeat of
the same reason and message on the same object bumps ``count`` and ``lastTimestamp`` of the first Event
instead of creating another (client-go tools/record/events_cache.go, ``EventCorrelator``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from sdworker_tools.podrunner.status import now_rfc3339

Json = dict[str, Any]
log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, core: client.CoreV1Api, node: str) -> None:
        self.core = core
        self.node = node
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def event(self, pod: Json, kind: str, reason: str, message: str, container: str | None = None) -> None:
        meta = pod["metadata"]
        namespace = meta["namespace"]
        field_path = f"spec.containers{{{container}}}" if container else ""
        key = (meta.get("uid", ""), field_path, reason, message)
        now = now_rfc3339()
        with self._lock:
            seen = self._seen.get(key)
        try:
            if seen is not None:
                name, count = seen
                self.core.patch_namespaced_event(name, namespace, {"count": count + 1, "lastTimestamp": now})
                with self._lock:
                    self._seen[key] = (name, count + 1)
                return
            name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
            involved: Json = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
            }
            if field_path:
                involved["fieldPath"] = field_path
            self.core.create_namespaced_event(
                namespace,
                {
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": involved,
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "source": {"component": "kubelet", "host": self.node},
                    "reportingComponent": "kubelet",
                    "reportingInstance": self.node,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                },
            )
            with self._lock:
                self._seen[key] = (name, 1)
        except Exception as exc:  # an event is best effort, as in the kubelet
            detail = exc.reason if isinstance(exc, ApiException) else f"{type(exc).__name__}: {exc}"
            log.warning("event %s for %s/%s not recorded: %s", reason, namespace, meta["name"], detail)


def patch_status(core: client.CoreV1Api, pod: Json, status: Json) -> None:
    """Strategic-merge the status into pods/status (containerStatuses merge by name, conditions by type)."""
    meta = pod["metadata"]
    core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})


def delete_pod(core: client.CoreV1Api, pod: Json) -> None:
    """The kubelet's final delete once the containers are gone: grace 0, only this incarnation (uid)."""
    meta = pod["metadata"]
    try:
        core.delete_namespaced_pod(
            meta["name"],
            meta["namespace"],
            body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta.get("uid"))
            ),
        )
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise
