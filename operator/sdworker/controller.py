"""The operator's reconciler: kopf's handlers mark keys, one work queue reconciles them.

Owns the operator's keys in the one reconcile engine (``sdworker.workqueue``: per-key back-off, one job at a
time per key, several keys at once), the periodic full resync and orphan sweep, and the composition of the
parts: the placement pass (``sdworker.placement_pass``, nodes -> RuntimeDisks, each missing one created as its
own key), the SDWorker reconcile (``sdworker.sdworker_reconciler``), the RuntimeDisks' cloud work
(``sdworker.provisioning``, its own queue) and the cloud housekeeping (warm pool, orphan sweep). Every job
recomputes from whole observations (``sdworker.view``), so a missed or duplicated event never leaves the
cluster wrong for longer than one resync. With kopf peering, only the active replica works: both queues
and the periodic marks wait on the leadership gate (``sdworker.leadership``). Why a queue of our own and
not kopf's retries: docs/architecture.md, "The reconcile engine".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sdworker import view
from sdworker.api import constants as c
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import Phase, ResolvedImage
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import CloudProvider
from sdworker.domain import placement, teardown
from sdworker.domain.pool import PoolKey, PoolTarget
from sdworker.kube.client import Kube, KubeError
from sdworker.leadership import Gate
from sdworker.metrics import Metrics
from sdworker.orphan_sweep import OrphanSweeper
from sdworker.placement_pass import PlacementPass
from sdworker.preprovisioning import Preprovisioning
from sdworker.provisioning import ImageResolver, Provisioner
from sdworker.sdworker_reconciler import Resolver, SDWorkerReconciler
from sdworker.view import Indexes
from sdworker.warm_pool import WarmPool, any_pool_wanted
from sdworker.workqueue import WorkQueue

__all__ = ["Controller", "Indexes", "error_reason", "resolve_as_written"]

log = logging.getLogger("sdworker.controller")
Key = tuple[str, ...]
PLACEMENT: Key = ("placement",)
SWEEP: Key = ("sweep",)
REFILL: Key = ("refill",)
OBSERVE: Key = ("observe",)
# Keys reconciled at once (SDWorkers, RuntimeDisk creations...); one at a time per key.
CONCURRENCY = 32


async def resolve_as_written(image: str) -> ResolvedImage:
    """Without a cloud provider the image is taken as written and its digest is unknown."""
    return ResolvedImage(image=image, digest="")


def error_reason(exc: BaseException) -> str:
    """An UpperCamelCase reason for a failed reconcile step (the metrics' ``reason`` label)."""
    if isinstance(exc, CloudError):
        return exc.reason
    if isinstance(exc, KubeError):
        return f"Kube{exc.reason or exc.status}"
    return type(exc).__name__


class Controller:
    def __init__(
        self,
        kube: Kube,
        *,
        cloud: CloudProvider | None = None,
        cluster: str = "sdworker",
        resync_seconds: float = 60.0,
        sweep_seconds: float = 300.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
        preprovision: bool = True,
        project: str | None = None,
        failed_retry_seconds: float = 300.0,
        concurrency: int = CONCURRENCY,
        leader: bool = True,
    ) -> None:
        self.kube = kube
        self.cloud = cloud
        self.view = view.View()
        self.metrics = metrics if metrics is not None else Metrics()
        # Open in a standalone operator; with peering, a ``PeeringWatcher`` opens it in the active replica.
        self.gate = Gate(open_=leader, on_change=self._leadership_changed)
        self.metrics.leader(leader)
        self.resync_seconds = resync_seconds
        self.sweep_seconds = sweep_seconds
        self.warm_pool = WarmPool(cloud, cluster=cluster, metrics=self.metrics) if cloud is not None else None
        # ``project``: searched by every sweep, even when no node or RuntimeDisk is left to name it.
        self.sweeper = (
            OrphanSweeper(cloud, cluster=cluster, projects=[project] if project else [], metrics=self.metrics)
            if cloud is not None
            else None
        )
        self._pool_targets: Mapping[PoolKey, PoolTarget] = {}
        # The zones the last refill found no pool wanted in (None: look again). While no pool is wanted
        # and none was, a refill has nothing to do (issue 15: at 1000 nodes, each one listed the zone's
        # 1000 disks after every placement pass); startup, resync and leadership look anyway.
        self._idle_zones: set[tuple[str, str]] | None = None
        self._seen_zones: set[tuple[str, str]] = set()
        # Without a cloud provider images are taken as written and RuntimeDisks stay Pending.
        self.images: ImageResolver | None = ImageResolver(cloud) if cloud is not None else None
        self.resolver: Resolver = self.images if self.images is not None else resolve_as_written
        self.provisioner: Provisioner | None = None
        if cloud is not None:
            self.provisioner = Provisioner(
                kube,
                cloud,
                cluster=cluster,
                runtimedisk=lambda name: view.one(self.view.indexes.runtimedisks, name),
                parse=self.view.runtimedisk,
                node_exists=lambda name: view.one(self.view.indexes.nodes, name) is not None,
                now=now,
                metrics=self.metrics,
                failed_retry_seconds=failed_retry_seconds,
                gate=self.gate.wait,
            )
        self.queue: WorkQueue[Key] = WorkQueue(
            self._work,
            name="operator",
            concurrency=concurrency,
            max_delay=60.0,
            on_error=self._on_error,
            gate=self.gate.wait,
        )
        self.sdworkers = SDWorkerReconciler(
            kube, self.view, self.resolver, self.images, now, self.mark_all_nodes
        )
        self.placement = PlacementPass(
            kube,
            self.view,
            self.resolver,
            cluster,
            self.warm_pool,
            # With a cloud, RuntimeDisks for launched NodeClaims are made before their nodes register.
            Preprovisioning(kube) if preprovision and cloud is not None else None,
            create_later=lambda name: self.queue.add(("create", name)),
            refill=self._refill_later,
            saw_nodes=self._zones,
        )

    # --- marking (kopf's handlers call these) ---------------------------------------------------

    def bind(self, indexes: Indexes) -> None:
        self.view.bind(indexes)

    def mark_sdworker(self, namespace: str, name: str) -> None:
        self.queue.add(("sdworker", namespace, name))

    def mark_node(self, name: str) -> None:
        self.queue.add(PLACEMENT)

    def mark_runtimedisk(self, name: str, body: Mapping[str, Any] | None = None) -> None:
        """RuntimeDisk ``name`` changed (``body``: as the event carried it): its own work, and the status
        of the SDWorkers that count it (all of them when ``body`` is not given)."""
        self.queue.add(("runtimedisk", name))
        self.queue.add(OBSERVE)
        if body is None:
            self.mark_all_sdworkers()
        elif self.view.bound:
            for namespace, sdworker in self.view.owners_of(body):
                self.mark_sdworker(namespace, sdworker)

    def mark_all_nodes(self) -> None:
        self.queue.add(PLACEMENT)

    def mark_all_sdworkers(self) -> None:
        if self.view.bound:
            for namespace, name in self.view.indexes.sdworkers:
                self.mark_sdworker(namespace, name)

    def mark_everything(self) -> None:
        if not self.view.bound:
            return
        self.sdworkers.forget_applied()  # re-apply children: someone may have edited or deleted them
        self._idle_zones = None  # the next refill looks at every zone, pools wanted or not
        self.mark_all_nodes()
        self.mark_all_sdworkers()
        for name in self.view.indexes.runtimedisks:
            self.queue.add(("runtimedisk", name))
        self.queue.add(OBSERVE)

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.queue.run(), name="operator-queue")]
        tasks.append(
            asyncio.create_task(self._every(self.resync_seconds, self.mark_everything), name="resync")
        )
        if self.sweeper is not None:
            tasks.append(asyncio.create_task(self._every(self.sweep_seconds, self.sweep_now), name="sweep"))
        if self.provisioner is not None:
            tasks.append(asyncio.create_task(self.provisioner.run(), name="runtimedisk-queue"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _every(self, seconds: float, mark: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.gate.is_open():  # a standby replica marks nothing
                mark()

    def _leadership_changed(self, active: bool) -> None:
        self.metrics.leader(active)
        if active:  # what the cache says may have changed while another replica acted: look at everything
            self.mark_everything()
            if self.sweeper is not None:
                self.sweep_now()

    async def close(self) -> None:
        await self.queue.close()
        if self.provisioner is not None:
            await self.provisioner.close()
        if self.cloud is not None:
            await self.cloud.close()
        await self.kube.close()

    async def _work(self, key: Key) -> None:
        if not self.view.bound and key != SWEEP:  # the sweep reads the API server itself
            self.queue.add_after(key, 0.5)  # kopf binds the indexes with the first event
            return
        kind = key[0]
        if kind == "sdworker":
            await self.sdworkers.reconcile(key[1], key[2])
        elif kind == "runtimedisk":
            await self._reconcile_runtimedisk(key[1])
        elif kind == "create":
            await self.placement.create(key[1])
        elif key == PLACEMENT:
            await self.placement.run()
            self.queue.add(OBSERVE)
        elif key == REFILL:
            await self._refill_pool()
        elif key == SWEEP:
            await self._sweep()
        elif key == OBSERVE:
            self._observe_runtimedisks()

    def _on_error(self, key: Key, exc: BaseException, failures: int, delay: float) -> None:
        self.metrics.reconcile_error(error_reason(exc))
        level = logging.INFO if isinstance(exc, KubeError) and exc.status == 409 else logging.WARNING
        log.log(level, "reconcile %s failed (attempt %d, retry in %.1fs): %s", key, failures, delay, exc)

    def _observe_runtimedisks(self) -> None:
        """Phase counts, and node-created -> Ready once per RuntimeDisk (the agent sets Ready)."""
        phases, present = [], set()
        for body in view.every(self.view.indexes.runtimedisks):
            uid = body["metadata"].get("uid", "")
            rd = self.view.runtimedisk(body)
            if rd is None:
                continue
            phases.append(str(rd.status.phase))
            present.add(uid)
            if rd.status.phase is Phase.READY and not rd.deleting:
                t = rd.status.timings
                moments = [m for m in (t.attached, t.mounted, t.verified, t.prefetched) if m is not None]
                self.metrics.runtimedisk_ready(uid, t.node_created, max(moments) if moments else None)
        self.metrics.runtimedisk_phases(phases)
        self.metrics.retain_ready(present)

    def _refill_later(self, targets: Mapping[PoolKey, PoolTarget]) -> None:
        self._pool_targets = targets
        self.queue.add(REFILL)

    # --- cloud housekeeping ---------------------------------------------------------------------

    def _zones(self) -> set[tuple[str, str]]:
        """Zones to look after: where nodes or RuntimeDisks are, and where they were since start-up
        (a shared or orphaned disk outlives the zone's last node)."""
        idx = self.view.indexes
        self._seen_zones.update((d.spec.project, d.spec.zone) for d in self.view.runtimedisks())
        for node in view.every(idx.nodes):
            instance = placement.parse_provider_id(view.node_info(node).provider_id)
            if instance is not None:
                self._seen_zones.add((instance.project, instance.zone))
        return set(self._seen_zones)

    async def _refill_pool(self) -> None:
        targets = self._pool_targets
        assert self.warm_pool is not None
        zones = self._zones()
        if not targets and self._idle_zones is not None and zones <= self._idle_zones:
            return  # no pool wanted, none since the last look at these zones: none to top up or delete
        self._idle_zones = None
        report = await self.warm_pool.refill(targets, zones)
        self._idle_zones = None if targets else zones
        if report.created or report.deleted:
            log.info("warm pool: created %s, deleted %s", report.created, report.deleted)

    async def _sweep(self) -> None:
        assert self.sweeper is not None
        # Claims from a fresh list, not the indexes: kopf binds those with the first event, and an operator
        # restarted after the last node left may see none, yet must sweep what those nodes left behind.
        listed = await self.kube.list(c.RUNTIMEDISK_KIND)
        claimed = {str((rd.get("spec") or {}).get("diskName", "")) for rd in listed}
        pools_wanted = any_pool_wanted(await self.kube.list(c.SDWORKER_KIND))
        seen = {project for project, _ in self._zones()} if self.view.bound else set()
        projects = seen | self.sweeper.projects
        log.info("orphan sweep over projects %s (%d disks claimed)", sorted(projects), len(claimed))
        deleted = await self.sweeper.sweep(claimed, projects, pools_wanted=pools_wanted)
        if deleted:
            log.info("orphan sweep deleted %d disks: %s", len(deleted), deleted)

    def sweep_now(self) -> None:
        self.queue.add(SWEEP)

    # --- RuntimeDisk teardown (without a cloud: the provisioner's job otherwise) ---------------

    async def _reconcile_runtimedisk(self, name: str) -> None:
        idx = self.view.indexes
        body = view.one(idx.runtimedisks, name)
        if body is None:
            return
        if self.provisioner is not None:
            self.provisioner.kick(name)
            return
        if not view.deleting(body):
            return
        rd = parse_runtimedisk(body)
        facts = teardown.facts_of(rd, node_exists=view.one(idx.nodes, rd.spec.node_name) is not None)
        releases = [
            r for r in teardown.releasable(facts) if r.finalizer in body["metadata"].get("finalizers", [])
        ]
        if releases:
            log.info(
                "RuntimeDisk %s: releasing %s",
                name,
                ", ".join(f"{r.finalizer} ({r.reason})" for r in releases),
            )
            await self.kube.remove_finalizers(body, [r.finalizer for r in releases])
