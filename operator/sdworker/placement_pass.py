"""The placement pass: from every node and SDWorker to the RuntimeDisks that should exist, and the writes.

One pass (the controller's placement key) reads whole observations (``sdworker.view``), asks the pure
``domain.placement`` which RuntimeDisks each node needs (nodes Karpenter is launching included), deletes the
ones no longer needed (never while a pod uses the runtime), and hands each missing one to the queue as its
own key: a warm-pool claim and a create take a few cloud and API round trips each, so at 100 new nodes they
run side by side (bounded by the queue's concurrency) instead of one after another (issue 15), and still
one at a time per RuntimeDisk.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdworker import view
from sdworker.api import constants as c
from sdworker.api.parse import SpecError, parse_rollout_status, parse_runtime_status, parse_sdworker
from sdworker.api.types import ResolvedImage, RuntimeDiskSpec, SDWorker
from sdworker.domain import placement, teardown
from sdworker.domain.pool import PoolKey, PoolTarget, pool_targets
from sdworker.domain.preprovision import FutureNode
from sdworker.kube.client import Kube
from sdworker.preprovisioning import Preprovisioning, record_created
from sdworker.warm_pool import WarmPool
from sdworker.workqueue import Requeue

log = logging.getLogger("sdworker.placement")
Json = dict[str, Any]
Resolver = Callable[[str], Awaitable[ResolvedImage | None]]
# While a runtime waits on a node for its last pods to go, placement looks again this often (no Pod watch).
RETIRE_RECHECK_SECONDS = 3.0
# A RuntimeDisk this operator created is not created again (nor a pool disk claimed for it) for this long,
# even if the index does not show it yet.
_CREATED_MEMORY_SECONDS = 60.0


@dataclass(frozen=True)
class _Wanted:
    spec: RuntimeDiskSpec
    node: Json | None  # the registered node, or None for one Karpenter is launching (``future``)
    future: FutureNode | None
    pooled: bool  # its (zone, runtime) keeps a warm pool: claim a disk from it first


@dataclass
class PlacementPass:
    kube: Kube
    observed: view.View
    resolver: Resolver
    cluster: str
    warm_pool: WarmPool | None
    preprovisioning: Preprovisioning | None
    create_later: Callable[[str], None]  # queue one missing RuntimeDisk's creation (``create``)
    refill: Callable[[Mapping[PoolKey, PoolTarget]], None]  # the warm pools' targets changed
    saw_nodes: Callable[[], object]  # the nodes were looked at (the sweeper remembers their zones)
    _wanted: dict[str, _Wanted] = field(default_factory=dict, init=False)
    _created: dict[str, float] = field(default_factory=dict, init=False)

    async def run(self) -> None:
        """One placement pass; raises ``Requeue`` while a RuntimeDisk waits for its pods to go."""
        idx = self.observed.indexes
        workers: list[SDWorker] = []
        served: dict[tuple[str, str], ResolvedImage] = {}
        pinned: dict[tuple[str, str], ResolvedImage] = {}
        invalid = 0
        for body in view.every(idx.sdworkers):
            if view.deleting(body):
                continue
            try:
                worker = parse_sdworker(body)
            except SpecError:
                invalid += 1
                continue
            workers.append(worker)
            recorded = parse_runtime_status((body.get("status") or {}).get("runtime"))
            if recorded is not None:
                served[worker.key] = ResolvedImage(image=recorded.image, digest=recorded.digest)
            going = parse_rollout_status((body.get("status") or {}).get("rollout"))
            kept = going.target if going is not None else recorded
            if kept is not None and view.pinned(body):
                pinned[worker.key] = ResolvedImage(image=kept.image, digest=kept.digest)
        resolved: dict[str, ResolvedImage] = {}
        for image in sorted({w.spec.runtime.image for w in workers}):
            found = await self.resolver(image)
            if found is not None:
                resolved[image] = found
        nodes = {n["metadata"]["name"]: n for n in view.every(idx.nodes)}
        self.saw_nodes()  # remember every zone a node was seen in, for the sweeper
        claims = view.every(idx.nodeclaims)
        futures = self.preprovisioning.future_nodes(claims, nodes) if self.preprovisioning else {}
        plan = placement.place(
            [*map(view.node_info, nodes.values()), *(f.node for f in futures.values())],
            workers,
            resolved,
            cluster=self.cluster,
            served=served,
            pinned=pinned,
        )
        targets = pool_targets(plan.desired, workers, resolved, pinned)
        for skipped in plan.skipped:
            log.info("node %s gets no runtime: %s (%s)", skipped.node, skipped.reason, skipped.message)
        existing = {d["metadata"]["name"]: d for d in view.every(idx.runtimedisks)}
        to_create, to_delete = placement.diff_runtimedisks(plan.desired, existing)
        self._created = {
            k: t for k, t in self._created.items() if k not in existing
        }  # seen: the index decides
        self._wanted = {}
        for rd_name in to_create:
            spec = plan.desired[rd_name]
            node = nodes.get(spec.node_name)
            future = futures.get(spec.node_name)
            if (node is None and future is None) or (node is not None and view.deleting(node)):
                continue
            pooled = PoolKey(spec.project, spec.zone, spec.runtime_id) in targets
            self._wanted[rd_name] = _Wanted(spec, node, future if node is None else None, pooled)
            self.create_later(rd_name)
        if self.preprovisioning is not None:
            await self.preprovisioning.adopt(view.every(idx.runtimedisks), nodes)
        if self.warm_pool is not None:
            self.refill(targets)  # in the background: a new node must not wait for the pool's next disk
        # A spec the operator cannot parse (CRD skew) must not tear down disks that pods use, and
        # neither may an image that could not be resolved this time.
        if invalid or plan.unresolved:
            return
        if await self._retire(existing, to_delete):
            raise Requeue(RETIRE_RECHECK_SECONDS, "a runtime waits for its pods to go")

    async def _retire(self, existing: Mapping[str, Json], to_delete: list[str]) -> bool:
        """Delete the RuntimeDisks no SDWorker needs; True if one waits for pods that still use it."""
        pods = await self.kube.list("Pod") if to_delete else []
        waiting = False
        for rd_name in to_delete:
            if view.deleting(existing[rd_name]):
                continue
            rd_spec = existing[rd_name].get("spec") or {}
            # Retire last: never while a pod bound to the node uses the runtime (issue 14).
            users = teardown.pods_using(pods, str(rd_spec.get("nodeName")), str(rd_spec.get("mountPath")))
            if users:
                log.info("RuntimeDisk %s is no longer needed; waiting for pods %s", rd_name, ", ".join(users))
                waiting = True
                continue
            log.info("deleting RuntimeDisk %s: no SDWorker needs it on its node", rd_name)
            await self.kube.delete(c.RUNTIMEDISK_KIND, rd_name)
        return waiting

    async def create(self, name: str) -> None:
        """The queue's work for one missing RuntimeDisk: claim a warm-pool disk if there is a pool, create."""
        wanted = self._wanted.get(name)
        now = time.monotonic()
        self._created = {k: t for k, t in self._created.items() if now - t < _CREATED_MEMORY_SECONDS}
        if wanted is None or name in self._created or view.one(self.observed.indexes.runtimedisks, name):
            return  # no longer wanted, or made already (the index may not show it yet)
        spec = wanted.spec
        if self.warm_pool is not None and wanted.pooled:
            claimed = await self.warm_pool.claim(spec)
            if claimed is not None:
                spec = dataclasses.replace(spec, disk_name=claimed)
        if wanted.node is not None:
            await self._create(name, wanted.node, spec.to_dict())
        elif wanted.future is not None and self.preprovisioning is not None:
            await self.preprovisioning.create(name, wanted.future, spec.to_dict())
        self._created[name] = now
        if self._wanted.get(name) is wanted:
            del self._wanted[name]

    async def _create(self, name: str, node: Mapping[str, Any], spec: Json) -> None:
        manifest = placement.runtimedisk_manifest(
            name, node["metadata"]["name"], node["metadata"]["uid"], spec
        )
        if await self.kube.create(manifest) is None:
            return
        log.info("created RuntimeDisk %s for node %s", name, spec["nodeName"])
        node_created = str(node["metadata"]["creationTimestamp"])
        await record_created(self.kube, name, message="Waiting for a disk", node_created=node_created)
