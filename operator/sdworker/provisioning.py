"""Driving RuntimeDisks through the cloud: Pending -> Creating -> Attaching -> Attached, and back.

Owns the RuntimeDisks' key in the one reconcile engine (``sdworker.workqueue``: one job at a time per disk,
many disks at once), the operator's phase, timing and reason writes on their status (through
``kube.status.update_status``, checked against ``api.transitions``), Events on transitions, back-off for
retryable cloud errors, ``Failed`` for fatal ones (retried with a long back-off, since a permission can be
granted or a quota raised: issue 16), and the teardown: wait for the agent's unmount, detach, delete, release
``sdworker.dev/cloud-disk``. Every cloud call is idempotent, so work that re-runs a step after a restart or a
stale read only costs a GET; every status write decides from the fresh object, so a stale read never
moves a phase back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.transitions import Writer, advance, allowed, note, operator_retries
from sdworker.api.types import Phase, ResolvedImage, RuntimeDisk, RuntimeMode
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_RUNTIME,
    AttachRequest,
    CloudProvider,
    DiskRequest,
)
from sdworker.domain import teardown
from sdworker.kube.client import Kube
from sdworker.kube.status import update_status
from sdworker.metrics import Metrics
from sdworker.workqueue import Requeue, WorkQueue, backoff

log = logging.getLogger("sdworker.provisioning")
Json = dict[str, Any]
COMPONENT = "sdworker-operator"
# Phases the operator has nothing more to do in (the agent takes an Attached disk from there).
_RESTING = frozenset({Phase.ATTACHED, Phase.MOUNTING, Phase.READY})
# RuntimeDisks driven at once. Each waits mostly on cloud operations (a realistic create + attach takes
# 20-30 s) and the write pacer bounds the writes, so this must stay well above quota x operation time
# (25 writes/s / 2 writes a disk x ~30 s: ~375 disks in flight) or it, not the quota, would set the pace.
CONCURRENCY = 1000


def _generation(body: Json) -> int:
    return int(body["metadata"].get("generation") or 0)


class _Moved(Exception):  # noqa: N818 - a control signal, not an error report
    """The RuntimeDisk moved on (a fresh read shows a phase this write may not follow): nothing to do."""


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
        parse: Callable[[Json], RuntimeDisk | None],
        node_exists: Callable[[str], bool],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
        failed_retry_seconds: float = 300.0,
        concurrency: int = CONCURRENCY,
        gate: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.kube = kube
        self.cloud = cloud
        self.metrics = metrics if metrics is not None else Metrics()
        self.cluster = cluster
        self._lookup = runtimedisk
        # The view's parse, once per version (None: malformed, already warned about; its next version comes
        # as a new event).
        self._parse = parse
        self._node_exists = node_exists
        self.now = now
        self.failed_retry_seconds = failed_retry_seconds
        self.queue: WorkQueue[str] = WorkQueue(
            self._reconcile, name="runtimedisks", concurrency=concurrency, on_error=self._on_error, gate=gate
        )
        self._last_reason: dict[str, str] = {}
        # Failed RuntimeDisks: how often they failed in a row, and when the next try is due (monotonic) unless
        # their spec changes (the generation they failed at).
        self._fatal: dict[str, int] = {}
        self._retry_at: dict[str, tuple[float, int]] = {}

    def kick(self, name: str) -> None:
        """Make sure RuntimeDisk ``name`` is (or will again be) looked at."""
        self.queue.add(name)

    async def run(self) -> None:
        await self.queue.run()

    async def close(self) -> None:
        await self.queue.close()

    def busy(self) -> int:
        return self.queue.busy()

    async def _reconcile(self, name: str) -> None:
        body = self._lookup(name)
        if body is None:
            for memory in (self._last_reason, self._fatal, self._retry_at):
                memory.pop(name, None)
            return
        rd = self._parse(body)
        if rd is None:
            return
        try:
            if rd.deleting:
                await self._teardown(body, rd)
            else:
                await self._provision(body, rd)
        except _Moved as moved:
            log.debug("RuntimeDisk %s: %s", name, moved)
        except CloudError as err:
            self.metrics.reconcile_error(err.reason)
            if err.retryable:
                await self._note(name, err, "retrying")
                raise  # the queue retries it with back-off
            await self._fatal_error(name, err, deleting=rd.deleting, generation=_generation(body))

    def _on_error(self, name: str, exc: BaseException, failures: int, delay: float) -> None:
        if isinstance(exc, CloudError):
            log.info("RuntimeDisk %s: %s; retrying in %.1fs", name, exc, delay)
            return
        self.metrics.reconcile_error(type(exc).__name__)
        log.warning(
            "RuntimeDisk %s: unexpected error (attempt %d, retry in %.1fs): %r", name, failures, delay, exc
        )

    # --- status writes -----------------------------------------------------------------------

    async def _phase(
        self,
        name: str,
        phase: Phase,
        reason: str,
        message: str,
        *,
        durations: Mapping[str, float] | None = None,
    ) -> None:
        """Move ``name`` to ``phase`` if the fresh object allows it; raise ``_Moved`` if it moved on."""

        def mutate(obj: Json) -> Json:
            status = obj.get("status") or {}
            current = Phase(status.get("phase") or Phase.PENDING)
            problem = allowed(Writer.OPERATOR, current, phase)
            if problem is not None:
                raise _Moved(problem)
            return advance(
                status,
                Writer.OPERATOR,
                phase,
                reason=reason,
                message=message,
                now=self.now(),
                durations=durations,
            )

        if await update_status(self.kube, c.RUNTIMEDISK_KIND, name, mutate) is None:
            raise _Moved("it is gone")

    async def _event(self, name: str, type_: str, reason: str, message: str) -> None:
        body = self._lookup(name)
        uid = body["metadata"]["uid"] if body else ""
        involved = {"apiVersion": c.API_VERSION, "kind": c.RUNTIMEDISK_KIND, "name": name, "uid": uid}
        await self.kube.post_event(involved, type_=type_, reason=reason, message=message, component=COMPONENT)

    async def _note(self, name: str, err: CloudError, doing: str) -> None:
        """A failure the disk stays in its phase for: say so in the status, and post an Event when the
        reason changes."""
        message = f"{err.message} ({doing})"
        await update_status(
            self.kube,
            c.RUNTIMEDISK_KIND,
            name,
            lambda obj: note(obj.get("status") or {}, reason=err.reason, message=message),
        )
        if self._last_reason.get(name) != err.reason:
            self._last_reason[name] = err.reason
            await self._event(name, "Warning", err.reason, err.message)

    async def _fatal_error(self, name: str, err: CloudError, *, deleting: bool, generation: int) -> None:
        """A fatal cloud error: Failed (or, tearing down, a note), tried again after a long back-off.

        The cause is outside sdworker (a permission, a quota, a missing image) and may be fixed at any
        moment, so the disk is not given up on; the back-off keeps a broken project from a retry storm.
        """
        failures = self._fatal.get(name, 0) + 1
        self._fatal[name] = failures
        delay = backoff(failures, base=min(5.0, self.failed_retry_seconds), cap=self.failed_retry_seconds)
        self._retry_at[name] = (time.monotonic() + delay, generation)
        log.warning("RuntimeDisk %s failed: %s (trying again in %.0fs)", name, err, delay)
        if deleting:
            await self._note(name, err, f"trying again in {delay:.0f}s")
        else:
            try:
                await self._phase(
                    name, Phase.FAILED, err.reason, f"{err.message} (trying again in {delay:.0f}s)"
                )
            except _Moved:
                return
            self._last_reason[name] = err.reason
            await self._event(name, "Warning", err.reason, err.message)
        raise Requeue(delay, err.reason)

    # --- provisioning ------------------------------------------------------------------------

    async def _provision(self, body: Json, rd: RuntimeDisk) -> None:
        key = body["metadata"]["uid"]
        name, phase = rd.name, rd.status.phase
        if phase in _RESTING:
            return
        if phase is Phase.FAILED:
            if not operator_retries(body.get("status") or {}):
                return  # failed on the node: the agent's to retry
            at, generation = self._retry_at.get(name, (0.0, 0))
            due = at - time.monotonic()
            if due > 0 and generation == _generation(body):
                raise Requeue(due, "waiting to retry a Failed RuntimeDisk")
        spec = rd.spec
        shared = spec.mode is RuntimeMode.SHARED_READ_ONLY
        started = time.monotonic()
        if phase in (Phase.PENDING, Phase.FAILED):
            await self._phase(
                name, Phase.CREATING, "CreatingDisk", f"Creating disk {spec.disk_name} from {spec.image}"
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
        await self._phase(
            name, Phase.ATTACHING, "AttachingDisk", f"Attaching {spec.disk_name} to {spec.instance}"
        )
        attach = AttachRequest(
            spec.project,
            spec.zone,
            spec.instance,
            spec.disk_name,
            device_name=spec.device_name,
            read_only=shared,
            # A per-node disk dies with its VM (scale-in needs no cleanup); a shared one outlives it.
            auto_delete=not shared,
        )
        await self.cloud.ensure_attached(attach, idempotency_key=key)
        attached = time.monotonic()
        self.metrics.phase_done("attach", attached - created)
        await self._phase(
            name,
            Phase.ATTACHED,
            "Attached",
            f"{spec.disk_name} attached to {spec.instance} as {spec.device_name}",
            durations={"createDisk": round(created - started, 3), "attach": round(attached - created, 3)},
        )
        for memory in (self._last_reason, self._fatal, self._retry_at):
            memory.pop(name, None)
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
            if not rd.status.phase.is_tearing_down:
                await self._teardown_phase(name, Phase.DETACHING, "Detaching")
            await self.cloud.ensure_detached(
                spec.project, spec.zone, spec.instance, spec.device_name, idempotency_key=key
            )
            if spec.mode is not RuntimeMode.SHARED_READ_ONLY:
                # A shared disk stays for the zone's other nodes; the sweeper deletes it once unused.
                await self._teardown_phase(name, Phase.DELETING, "Deleting")
                await self.cloud.ensure_deleted(spec.project, spec.zone, spec.disk_name, idempotency_key=key)
        await self._drop(name, [c.FINALIZER_CLOUD_DISK])
        log.info("RuntimeDisk %s: cloud disk %s released", name, spec.disk_name)

    async def _teardown_phase(self, name: str, phase: Phase, reason: str) -> None:
        """A teardown phase; a stale read that is already past it writes nothing and goes on."""
        try:
            await self._phase(name, phase, reason, "")
        except _Moved as moved:
            log.debug("RuntimeDisk %s: not %s: %s", name, phase, moved)

    async def _drop(self, name: str, finalizers: list[str]) -> None:
        # Fresh read: our own status writes have moved the resourceVersion on.
        fresh = await self.kube.get(c.RUNTIMEDISK_KIND, name)
        if fresh is not None:
            await self.kube.remove_finalizers(fresh, finalizers)
