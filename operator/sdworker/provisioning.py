"""Driving RuntimeDisks through the cloud: Pending -> Creating -> Attaching -> Attached, and back.

Owns at most one asyncio task per RuntimeDisk (one in-flight intent per disk), the phase, timing and
reason writes on the RuntimeDisk status, Events on transitions, retry with backoff for retryable cloud
errors and ``Failed`` (no retry storm) for fatal ones, and the teardown: wait for the agent's unmount,
detach, delete, release ``sdworker.dev/cloud-disk``. Every cloud call is idempotent, so a task that
re-runs a step after a restart or a stale read only costs a GET.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import Phase, ResolvedImage, RuntimeDisk, RuntimeMode, format_micro_time
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_RUNTIME,
    CloudProvider,
    DiskRequest,
)
from sdworker.domain import teardown
from sdworker.kube.client import Kube
from sdworker.metrics import Metrics

log = logging.getLogger("sdworker.provisioning")
Json = dict[str, Any]
COMPONENT = "sdworker-operator"
_MAX_BACKOFF = 30.0
_RESTING = frozenset({Phase.ATTACHED, Phase.MOUNTING, Phase.READY, Phase.FAILED})
_JITTER = random.Random()


def backoff(attempt: int, rng: random.Random = _JITTER) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling up to ``_MAX_BACKOFF``, half of it random.

    The jitter matters: RuntimeDisks refused together (a burst over the cloud's write quota) would otherwise
    retry together, forever in step, and against a quota of one write per second only one of them would get
    through per round (found by tests/chaos, the 403 rate-limit window).
    """
    cap = min(_MAX_BACKOFF, 0.5 * 2.0 ** min(attempt, 8))
    return cap / 2 + rng.uniform(0, cap / 2)


def gce_label(value: str) -> str:
    """A GCE label value: lowercase letters, digits, ``-`` and ``_``, at most 63 characters."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())
    return cleaned[:63]


def disk_labels(cluster: str, rd: RuntimeDisk) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_CLUSTER: gce_label(cluster),
        LABEL_RUNTIME: gce_label(rd.spec.runtime_id),
        **(
            {} if rd.spec.mode is RuntimeMode.SHARED_READ_ONLY else {LABEL_NODE: gce_label(rd.spec.node_name)}
        ),
    }


@dataclass
class ImageResolver:
    """Resolves runtime images through the cloud, caching answers (and fatal errors) for a while.

    Families move, so answers expire; a fatal error (image not found, permission denied) is cached too,
    so a broken spec costs one lookup per ``ttl`` instead of one per reconcile.
    """

    cloud: CloudProvider
    ttl: float = 60.0

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[float, ResolvedImage | None, CloudError | None]] = {}

    async def __call__(self, image: str) -> ResolvedImage | None:
        now = time.monotonic()
        hit = self._cache.get(image)
        if hit is not None and now - hit[0] < (self.ttl if hit[2] is None or not hit[2].retryable else 5.0):
            return hit[1]
        try:
            resolved: ResolvedImage | None = await self.cloud.resolve_image(image)
            error = None
        except CloudError as err:
            log.warning("cannot resolve runtime image %s: %s", image, err)
            resolved, error = None, err
        self._cache[image] = (now, resolved, error)
        return resolved

    def error(self, image: str) -> tuple[str, str] | None:
        hit = self._cache.get(image)
        if hit is None or hit[2] is None:
            return None
        return hit[2].reason, f"Cannot resolve {image}: {hit[2].message}"


class Provisioner:
    def __init__(
        self,
        kube: Kube,
        cloud: CloudProvider,
        *,
        cluster: str,
        runtimedisk: Callable[[str], Json | None],
        node_exists: Callable[[str], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.cloud = cloud
        self.metrics = metrics if metrics is not None else Metrics()
        self.cluster = cluster
        self._lookup = runtimedisk
        self._node_exists = node_exists
        self.now = now
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._last_reason: dict[str, str] = {}
        # uids we brought to Attached: the index may still show an older phase for a moment.
        self._attached: set[str] = set()

    def kick(self, name: str) -> None:
        """Make sure a task is (or will again be) looking at RuntimeDisk ``name``."""
        task = self._tasks.get(name)
        if task is not None and not task.done():
            self._again.add(name)
            return
        self._tasks[name] = asyncio.create_task(self._drive(name), name=f"runtimedisk:{name}")

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def busy(self) -> int:
        return sum(not t.done() for t in self._tasks.values())

    async def _drive(self, name: str) -> None:
        attempt = 0
        while True:
            self._again.discard(name)
            body = self._lookup(name)
            if body is None:
                return
            try:
                rd = parse_runtimedisk(body)
                if rd.deleting:
                    await self._teardown(body, rd)
                else:
                    await self._provision(body, rd)
            except CloudError as err:
                attempt += 1
                self.metrics.reconcile_error(err.reason)
                if not err.retryable:
                    await self._fail(name, err)
                    return
                delay = backoff(attempt)
                await self._note(name, err, delay)
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                attempt += 1
                self.metrics.reconcile_error(type(exc).__name__)
                log.exception("RuntimeDisk %s: unexpected error; retrying", name)
                await asyncio.sleep(backoff(attempt))
                continue
            if name not in self._again:
                return
            attempt = 0

    # --- status writes -----------------------------------------------------------------------

    async def _status(self, name: str, status: Mapping[str, Any]) -> None:
        await self.kube.patch(c.RUNTIMEDISK_KIND, name, {"status": dict(status)}, sub="status")

    async def _event(self, name: str, type_: str, reason: str, message: str) -> None:
        body = self._lookup(name)
        uid = body["metadata"]["uid"] if body else ""
        involved = {"apiVersion": c.API_VERSION, "kind": c.RUNTIMEDISK_KIND, "name": name, "uid": uid}
        await self.kube.post_event(involved, type_=type_, reason=reason, message=message, component=COMPONENT)

    async def _note(self, name: str, err: CloudError, delay: float) -> None:
        """A retryable failure: say so in the status, and post an Event when the reason changes."""
        log.info("RuntimeDisk %s: %s; retrying in %.1fs", name, err, delay)
        await self._status(name, {"reason": err.reason, "message": f"{err.message} (retrying)"})
        if self._last_reason.get(name) != err.reason:
            self._last_reason[name] = err.reason
            await self._event(name, "Warning", err.reason, err.message)

    async def _fail(self, name: str, err: CloudError) -> None:
        log.warning("RuntimeDisk %s failed: %s", name, err)
        await self._status(name, {"phase": str(Phase.FAILED), "reason": err.reason, "message": err.message})
        await self._event(name, "Warning", err.reason, err.message)

    # --- provisioning ------------------------------------------------------------------------

    async def _provision(self, body: Json, rd: RuntimeDisk) -> None:
        key = body["metadata"]["uid"]
        if rd.status.phase in _RESTING or key in self._attached:
            return
        spec, name = rd.spec, rd.name
        shared = spec.mode is RuntimeMode.SHARED_READ_ONLY
        started = time.monotonic()
        if rd.status.phase is Phase.PENDING:
            await self._status(
                name,
                {
                    "phase": str(Phase.CREATING),
                    "reason": "CreatingDisk",
                    "message": f"Creating disk {spec.disk_name} from {spec.image}",
                },
            )
            await self._event(
                name, "Normal", "CreatingDisk", f"Creating disk {spec.disk_name} in {spec.zone}"
            )
        await self.cloud.ensure_disk(
            DiskRequest(
                project=spec.project,
                zone=spec.zone,
                name=spec.disk_name,
                source_image=spec.image,
                disk_type=str(spec.disk_type),
                size_gb=spec.disk_size_gb,
                labels=disk_labels(self.cluster, rd),
                read_only_many=shared,
            ),
            # Shared disks are one per zone: their create must dedupe across RuntimeDisks.
            idempotency_key=f"{self.cluster}/{spec.zone}/{spec.disk_name}" if shared else key,
        )
        created = time.monotonic()
        # A warm-pool disk was made before the node existed: the node's path had no create to measure.
        from_pool = not shared and spec.disk_name != naming.disk_name(spec.node_name, spec.runtime_id)
        if not from_pool:
            self.metrics.phase_done("create", created - started)
        timings = dict((body.get("status") or {}).get("timings") or {})
        timings.setdefault("diskCreated", format_micro_time(self.now()))
        await self._status(
            name,
            {
                "phase": str(Phase.ATTACHING),
                "reason": "AttachingDisk",
                "message": f"Attaching {spec.disk_name} to {spec.instance}",
                "timings": timings,
            },
        )
        await self.cloud.ensure_attached(
            spec.project,
            spec.zone,
            spec.instance,
            spec.disk_name,
            device_name=spec.device_name,
            read_only=shared,
            # A per-node disk dies with its VM (scale-in needs no cleanup); a shared one outlives it.
            auto_delete=not shared,
            idempotency_key=key,
        )
        timings.setdefault("attached", format_micro_time(self.now()))
        self.metrics.phase_done("attach", time.monotonic() - created)
        durations = dict(timings.get("durationsSeconds") or {})
        durations.setdefault("createDisk", round(created - started, 3))
        durations.setdefault("attach", round(time.monotonic() - created, 3))
        timings["durationsSeconds"] = durations
        await self._status(
            name,
            {
                "phase": str(Phase.ATTACHED),
                "reason": "Attached",
                "message": f"{spec.disk_name} attached to {spec.instance} as {spec.device_name}",
                "timings": timings,
            },
        )
        self._attached.add(key)
        self._last_reason.pop(name, None)
        await self._event(name, "Normal", "Attached", f"{spec.disk_name} attached to {spec.instance}")

    # --- teardown ----------------------------------------------------------------------------

    async def _teardown(self, body: Json, rd: RuntimeDisk) -> None:
        name, spec = rd.name, rd.spec
        finalizers = list(body["metadata"].get("finalizers") or [])
        facts = teardown.facts_of(rd, node_exists=self._node_exists(spec.node_name))
        releasable = {r.finalizer: r.reason for r in teardown.releasable(facts)}
        if c.FINALIZER_UNMOUNT in finalizers:
            if c.FINALIZER_UNMOUNT not in releasable:
                return  # the node agent unmounts and drops it; its update kicks us again
            await self._drop(name, [c.FINALIZER_UNMOUNT])
        if c.FINALIZER_CLOUD_DISK not in finalizers:
            return
        if c.FINALIZER_CLOUD_DISK not in releasable:
            key = body["metadata"]["uid"]
            if rd.status.phase is not Phase.DETACHING and rd.status.phase is not Phase.DELETING:
                await self._status(
                    name, {"phase": str(Phase.DETACHING), "reason": "Detaching", "message": ""}
                )
            await self.cloud.ensure_detached(
                spec.project, spec.zone, spec.instance, spec.device_name, idempotency_key=key
            )
            if spec.mode is not RuntimeMode.SHARED_READ_ONLY:
                # A shared disk stays for the zone's other nodes; the sweeper deletes it once unused.
                await self._status(name, {"phase": str(Phase.DELETING), "reason": "Deleting", "message": ""})
                await self.cloud.ensure_deleted(spec.project, spec.zone, spec.disk_name, idempotency_key=key)
        await self._drop(name, [c.FINALIZER_CLOUD_DISK])
        log.info("RuntimeDisk %s: cloud disk %s released", name, spec.disk_name)

    async def _drop(self, name: str, finalizers: list[str]) -> None:
        # Fresh read: our own status writes have moved the resourceVersion on.
        fresh = await self.kube.get(c.RUNTIMEDISK_KIND, name)
        if fresh is not None:
            await self.kube.remove_finalizers(fresh, finalizers)
