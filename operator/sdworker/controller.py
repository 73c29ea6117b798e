"""The operator's reconciler: one level-triggered loop from observed state to Kubernetes writes.

Owns the dirty-key queue (kopf event handlers only mark keys), the periodic full resync, per-key
retry with backoff, and the glue between kopf's indexes, the pure decisions (``domain.placement``,
``domain.render``, ``domain.status``, ``domain.teardown``) and ``kube.Kube``. Every pass recomputes
from whole observations, so a missed or duplicated event never leaves the cluster wrong for longer
than one resync.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import (
    SpecError,
    parse_conditions,
    parse_rollout_status,
    parse_runtime_status,
    parse_runtimedisk,
    parse_sdworker,
)
from sdworker.api.types import (
    Phase,
    ResolvedImage,
    RolloutStatus,
    RuntimeDisk,
    RuntimeStatus,
    SDWorker,
)
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import CloudProvider
from sdworker.domain import placement, render, rollout, teardown
from sdworker.domain import status as status_mod
from sdworker.domain.pool import PoolKey, PoolTarget, pool_targets
from sdworker.kube.client import Kube, KubeError
from sdworker.maintenance import Maintenance
from sdworker.metrics import Metrics
from sdworker.preprovisioning import Preprovisioning
from sdworker.provisioning import ImageResolver, Provisioner

log = logging.getLogger("sdworker.controller")
COMPONENT = "sdworker-operator"
Json = dict[str, Any]
# An image reference -> the concrete image and digest (the cloud layer's job); None: not yet known.
Resolver = Callable[[str], Awaitable[ResolvedImage | None]]

_SDWORKER = "sdworker"
_NODE = "node"
_RUNTIMEDISK = "runtimedisk"
_SWEEP = "sweep"
_MAX_BACKOFF = 60.0
# While a runtime waits on a node for its last pods to go, placement looks again this often (no Pod watch).
_RETIRE_RECHECK_SECONDS = 3.0


async def resolve_as_written(image: str) -> ResolvedImage:
    """Without a cloud provider the image is taken as written and its digest is unknown."""
    return ResolvedImage(image=image, digest="")


@dataclass
class Indexes:
    """kopf's indexes: key -> store of snapshots (one per key for the keys we use)."""

    sdworkers: Mapping[Any, Iterable[Json]]
    nodes: Mapping[Any, Iterable[Json]]
    runtimedisks: Mapping[Any, Iterable[Json]]
    deployments: Mapping[Any, Iterable[Json]]
    # Karpenter's NodeClaims (empty without Karpenter): disks before nodes, ``sdworker.preprovisioning``.
    nodeclaims: Mapping[Any, Iterable[Json]] = dataclasses.field(default_factory=dict)


def _one(index: Mapping[Any, Iterable[Json]], key: object) -> Json | None:
    for value in index.get(key, ()):
        return value
    return None


def _all(index: Mapping[Any, Iterable[Json]]) -> list[Json]:
    return [v for store in index.values() for v in store]


def _pinned(obj: Mapping[str, Any]) -> bool:
    return (obj.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_PIN_RUNTIME) == "true"


def _deleting(obj: Mapping[str, Any]) -> bool:
    return obj.get("metadata", {}).get("deletionTimestamp") is not None


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def error_reason(exc: BaseException) -> str:
    """An UpperCamelCase reason for a failed reconcile step (the metrics' ``reason`` label)."""
    if isinstance(exc, CloudError):
        return exc.reason
    if isinstance(exc, KubeError):
        return f"Kube{exc.reason or exc.status}"
    return type(exc).__name__


def _pod_runtime(pod: Mapping[str, Any]) -> str | None:
    value = (pod.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_RUNTIME_ID)
    return str(value) if value is not None else None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conditions)


def _node_info(node: Mapping[str, Any]) -> placement.NodeInfo:
    return placement.NodeInfo(
        name=node["metadata"]["name"],
        labels=node["metadata"].get("labels") or {},
        provider_id=node.get("spec", {}).get("providerID") or "",
        deleting=_deleting(node),
    )


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
    ) -> None:
        self.kube = kube
        # With a cloud, RuntimeDisks for launched NodeClaims are made before their nodes register.
        self._preprovisioning = Preprovisioning(kube) if preprovision and cloud is not None else None
        self.metrics = metrics if metrics is not None else Metrics()
        self.cloud = cloud
        self.cluster = cluster
        self.resync_seconds = resync_seconds
        self.sweep_seconds = sweep_seconds
        self.now = now
        self.maintenance = (
            Maintenance(cloud, cluster=cluster, metrics=self.metrics) if cloud is not None else None
        )
        self._refill: asyncio.Task[Any] | None = None
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
                runtimedisk=lambda name: _one(self._require_indexes().runtimedisks, name),
                node_exists=lambda name: _one(self._require_indexes().nodes, name) is not None,
                now=now,
                metrics=self.metrics,
            )
        self._indexes: Indexes | None = None
        self._dirty: set[tuple[str, ...]] = set()
        self._wake = asyncio.Event()
        self._failures: dict[tuple[str, ...], int] = {}
        self._applied: dict[tuple[str, str, str], str] = {}
        self._recheck: asyncio.TimerHandle | None = None  # a placement pass waiting for pods to go

    def _require_indexes(self) -> Indexes:
        assert self._indexes is not None, "indexes are bound before any reconcile"
        return self._indexes

    # --- marking -------------------------------------------------------------------------------

    def bind(self, indexes: Indexes) -> None:
        if self._indexes is None:
            self._indexes = indexes

    def _mark(self, key: tuple[str, ...]) -> None:
        self._dirty.add(key)
        self._wake.set()

    def mark_sdworker(self, namespace: str, name: str) -> None:
        self._mark((_SDWORKER, namespace, name))

    def mark_node(self, name: str) -> None:
        self._mark((_NODE, name))

    def mark_runtimedisk(self, name: str) -> None:
        self._mark((_RUNTIMEDISK, name))

    def mark_all_nodes(self) -> None:
        self._mark((_NODE, "*"))

    def mark_all_sdworkers(self) -> None:
        self._mark((_SDWORKER, "*"))

    def mark_everything(self) -> None:
        idx = self._indexes
        if idx is None:
            return
        self._applied.clear()  # re-apply children: someone may have edited or deleted them
        self.mark_all_nodes()
        self.mark_all_sdworkers()
        for name in idx.runtimedisks:
            self.mark_runtimedisk(name)

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync_forever())
        sweep = asyncio.create_task(self._sweep_forever()) if self.maintenance else None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._indexes is None:
                    continue
                batch, self._dirty = self._dirty, set()
                await self._process(batch)
        finally:
            resync.cancel()
            if sweep is not None:
                sweep.cancel()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self.mark_everything()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            self._mark((_SWEEP,))

    async def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
        if self.provisioner is not None:
            await self.provisioner.close()
        if self.cloud is not None:
            await self.cloud.close()
        await self.kube.close()

    async def _process(self, batch: set[tuple[str, ...]]) -> None:
        idx = self._indexes
        assert idx is not None
        # Teardown first (frees finalizers), then placement (creates/deletes RuntimeDisks), then
        # the SDWorkers, whose status counts the RuntimeDisks.
        for key in sorted(k for k in batch if k[0] == _RUNTIMEDISK):
            await self._guard(key, self._reconcile_runtimedisk(key[1]))
        if any(k[0] == _NODE for k in batch):
            await self._guard((_NODE, "*"), self._reconcile_placement())
        sdworker_keys = {k for k in batch if k[0] == _SDWORKER}
        if (_SDWORKER, "*") in sdworker_keys:
            sdworker_keys = {(_SDWORKER, ns, name) for ns, name in idx.sdworkers}
        for key in sorted(sdworker_keys):
            await self._guard(key, self._reconcile_sdworker(key[1], key[2]))
        if (_SWEEP,) in batch:
            await self._guard((_SWEEP,), self._sweep())
        self._observe_runtimedisks()

    def _observe_runtimedisks(self) -> None:
        """Phase counts, and node-created -> Ready once per RuntimeDisk (the agent sets Ready)."""
        assert self._indexes is not None
        phases, present = [], set()
        for body in _all(self._indexes.runtimedisks):
            uid = body["metadata"].get("uid", "")
            try:
                rd = parse_runtimedisk(body)
            except SpecError:
                continue
            phases.append(str(rd.status.phase))
            present.add(uid)
            if rd.status.phase is Phase.READY and not rd.deleting:
                t = rd.status.timings
                moments = [m for m in (t.attached, t.mounted, t.verified, t.prefetched) if m is not None]
                self.metrics.runtimedisk_ready(uid, t.node_created, max(moments) if moments else None)
        self.metrics.runtimedisk_phases(phases)
        self.metrics.retain_ready(present)

    async def _guard(self, key: tuple[str, ...], work: Awaitable[None]) -> None:
        """Run one reconcile; on failure retry that key later with exponential backoff."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.reconcile_error(error_reason(exc))
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(_MAX_BACKOFF, 0.5 * 2 ** (failures - 1))
            level = logging.INFO if isinstance(exc, KubeError) and exc.status == 409 else logging.WARNING
            log.log(level, "reconcile %s failed (attempt %d, retry in %.1fs): %s", key, failures, delay, exc)
            asyncio.get_running_loop().call_later(delay, self._mark, key)
        else:
            self._failures.pop(key, None)

    # --- SDWorkers -----------------------------------------------------------------------------

    async def _reconcile_sdworker(self, namespace: str, name: str) -> None:
        idx = self._indexes
        assert idx is not None
        body = _one(idx.sdworkers, (namespace, name))
        if body is None or _deleting(body):
            return  # children go with it: they carry its ownerReference
        meta = body["metadata"]
        status_body = body.get("status") or {}
        previous = parse_conditions(status_body.get("conditions"))
        previous_rollout = parse_rollout_status(status_body.get("rollout"))
        rollout_status: RolloutStatus | None = None
        spec_error: SpecError | None = None
        runtime_error: tuple[str, str] | None = None
        runtime: RuntimeStatus | None = None
        disks: list[RuntimeDisk] = []
        matching = 0
        deployment: status_mod.DeploymentObservation | None = None
        desired_replicas = 0
        try:
            worker = parse_sdworker(body)
        except SpecError as err:
            spec_error = err
        else:
            desired_replicas = worker.spec.replicas
            resolved = await self.resolver(worker.spec.runtime.image)
            runtime_error = self.images.error(worker.spec.runtime.image) if self.images else None
            nodes = [
                n
                for n in map(_node_info, _all(idx.nodes))
                if not n.deleting and placement.selector_matches(worker.spec.node_selector, n.labels)
            ]
            matching = len(nodes)
            names = {n.name for n in nodes}
            on_nodes = [d for d in self._runtimedisks() if d.spec.node_name in names]
            # A failed lookup keeps the runtime recorded in status: the Deployment and the status change
            # only when a new image is actually resolved, and a new one rolls in only as nodes have it
            # (issue 14; domain.rollout).
            annotations = meta.get("annotations") or {}
            paused = annotations.get(c.ANNOTATION_ROLLOUT_PAUSED) == "true"
            recorded = parse_runtime_status(status_body.get("runtime"))
            target = rollout.target_runtime(
                status_mod.served_runtime(resolved, None),
                served=recorded,
                recorded_target=previous_rollout.target if previous_rollout else None,
                pinned=annotations.get(c.ANNOTATION_PIN_RUNTIME) == "true",
            )
            if target is not None:
                child = naming.child_name(name)
                target_disks = [d for d in on_nodes if d.spec.runtime_id == target.runtime_id]
                ready_everywhere = matching > 0 and status_mod.count_nodes(target_disks).ready >= matching
                observed = self._observed_template(namespace, child, desired_replicas)
                others = 0
                if recorded is not None and target.runtime_id != recorded.runtime_id and observed.complete:
                    others = await self._pods_off_runtime(namespace, name, target.runtime_id)
                decision = rollout.decide(
                    served=recorded,
                    target=target,
                    observed=observed,
                    target_ready_everywhere=ready_everywhere,
                    other_runtime_pods=others,
                    paused=paused,
                )
                runtime = decision.served
                await self._apply_children(worker, decision.template_runtime, decision.replaces, paused)
                deployment = self._deployment_observation(namespace, child)
                if decision.rolling:
                    served_disks = [d for d in on_nodes if d.spec.runtime_id == runtime.runtime_id]
                    rollout_status = RolloutStatus(
                        target=target,
                        paused=paused,
                        target_nodes=status_mod.count_nodes(target_disks),
                        served_nodes=status_mod.count_nodes(served_disks),
                        updated_replicas=await self._pods_on_runtime(namespace, name, target.runtime_id),
                    )
                if recorded is not None and runtime.runtime_id != recorded.runtime_id:
                    self.mark_all_nodes()  # the old runtime is no longer wanted: placement retires it
            else:
                await self._apply_children(worker, None, (), paused)
            rid = runtime.runtime_id if runtime is not None else None
            disks = [d for d in on_nodes if rid is not None and d.spec.runtime_id == rid]
        new = status_mod.aggregate_status(
            name=name,
            generation=int(meta.get("generation") or 0),
            desired_replicas=desired_replicas,
            deployment=deployment,
            disks=disks,
            matching_nodes=matching,
            runtime=runtime,
            previous=previous,
            now=self.now(),
            spec_error=spec_error,
            runtime_error=runtime_error,
            rollout=rollout_status,
        )
        new_status = new.to_dict()
        if new_status != body.get("status"):
            await self.kube.patch(
                c.SDWORKER_KIND, name, {"status": new_status}, namespace=namespace, sub="status"
            )
        involved = {
            "apiVersion": c.API_VERSION,
            "kind": c.SDWORKER_KIND,
            "name": name,
            "namespace": namespace,
            "uid": meta.get("uid", ""),
        }
        events = status_mod.events_for_transition(previous, new.conditions)
        if spec_error is None:
            served_id = runtime.runtime_id if runtime is not None else None
            events += status_mod.rollout_events(previous_rollout, rollout_status, served_id)
        for event in events:
            await self.kube.post_event(
                involved, type_=event.type, reason=event.reason, message=event.message, component=COMPONENT
            )

    async def _apply_children(
        self, worker: SDWorker, runtime_id: str | None, replaces: tuple[str, ...], paused: bool
    ) -> None:
        """Apply the Service and PDB, and the Deployment once a runtime is known (``runtime_id``): a
        Deployment for a runtime that exists on no node would only make pods that cannot start."""
        ns, name, uid, spec = worker.namespace, worker.name, worker.uid, worker.spec
        manifests = [render.render_service(ns, name, uid, spec), render.render_pdb(ns, name, uid)]
        if runtime_id is not None:
            deployment = render.render_deployment(ns, name, uid, spec, runtime_id, replaces, paused=paused)
            manifests.insert(0, deployment)
        for manifest in manifests:
            key = (manifest["kind"], worker.namespace, manifest["metadata"]["name"])
            digest = _hash(manifest)
            if self._applied.get(key) == digest:
                continue
            await self.kube.apply(manifest)
            self._applied[key] = digest

    def _deployment_observation(self, namespace: str, name: str) -> status_mod.DeploymentObservation | None:
        assert self._indexes is not None
        dep = _one(self._indexes.deployments, (namespace, name))
        if dep is None:
            return None
        st = dep.get("status") or {}
        return status_mod.DeploymentObservation(
            replicas=int(st.get("replicas") or 0),
            ready_replicas=int(st.get("readyReplicas") or 0),
            updated_replicas=int(st.get("updatedReplicas") or 0),
            available_replicas=int(st.get("availableReplicas") or 0),
        )

    def _observed_template(self, namespace: str, name: str, desired_replicas: int) -> rollout.Observed:
        """The runtime the observed Deployment's template has, and whether its rollout is complete."""
        assert self._indexes is not None
        dep = _one(self._indexes.deployments, (namespace, name))
        if dep is None:
            return rollout.Observed()
        template_meta = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
        annotations = template_meta.get("annotations") or {}
        st = dep.get("status") or {}
        counts = [int(st.get(k) or 0) for k in ("replicas", "updatedReplicas", "readyReplicas")]
        seen = int(st.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 0)
        replaces = str(annotations.get(c.ANNOTATION_REPLACES) or "")
        runtime_id = annotations.get(c.ANNOTATION_RUNTIME_ID)
        return rollout.Observed(
            runtime_id=str(runtime_id) if runtime_id is not None else None,
            replaces=tuple(r for r in replaces.split(",") if r),
            complete=seen and all(n == desired_replicas for n in counts),
        )

    async def _sd_pods(self, namespace: str, name: str) -> list[Json]:
        return await self.kube.list("Pod", namespace, label_selector=render.label_selector(name))

    async def _pods_off_runtime(self, namespace: str, name: str, runtime_id: str) -> int:
        """Pods of the SDWorker (terminating ones too) whose template was another runtime's."""
        pods = await self._sd_pods(namespace, name)
        return sum(_pod_runtime(p) != runtime_id for p in pods)

    async def _pods_on_runtime(self, namespace: str, name: str, runtime_id: str) -> int:
        """Ready pods of the SDWorker that run ``runtime_id``."""
        pods = await self._sd_pods(namespace, name)
        return sum(_pod_runtime(p) == runtime_id and _pod_ready(p) and not _deleting(p) for p in pods)

    def _runtimedisks(self) -> list[RuntimeDisk]:
        assert self._indexes is not None
        out = []
        for body in _all(self._indexes.runtimedisks):
            try:
                out.append(parse_runtimedisk(body))
            except SpecError as err:
                log.warning("ignoring malformed RuntimeDisk %s: %s", body["metadata"]["name"], err)
        return out

    # --- nodes -> RuntimeDisks -----------------------------------------------------------------

    async def _reconcile_placement(self) -> None:
        idx = self._indexes
        assert idx is not None
        workers: list[SDWorker] = []
        served: dict[tuple[str, str], ResolvedImage] = {}
        pinned: dict[tuple[str, str], ResolvedImage] = {}
        invalid = 0
        for body in _all(idx.sdworkers):
            if _deleting(body):
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
            if kept is not None and _pinned(body):
                pinned[worker.key] = ResolvedImage(image=kept.image, digest=kept.digest)
        resolved: dict[str, ResolvedImage] = {}
        for image in sorted({w.spec.runtime.image for w in workers}):
            found = await self.resolver(image)
            if found is not None:
                resolved[image] = found
        nodes = {n["metadata"]["name"]: n for n in _all(idx.nodes)}
        self._zones()  # remember every zone a node was seen in, for the sweeper
        futures = (
            self._preprovisioning.future_nodes(_all(idx.nodeclaims), nodes) if self._preprovisioning else {}
        )
        plan = placement.place(
            [*map(_node_info, nodes.values()), *(f.node for f in futures.values())],
            workers,
            resolved,
            cluster=self.cluster,
            served=served,
            pinned=pinned,
        )
        targets = pool_targets(plan.desired, workers, resolved, pinned)
        for skipped in plan.skipped:
            log.info("node %s gets no runtime: %s (%s)", skipped.node, skipped.reason, skipped.message)
        existing = {d["metadata"]["name"]: d for d in _all(idx.runtimedisks)}
        to_create, to_delete = placement.diff_runtimedisks(plan.desired, existing)
        for rd_name in to_create:
            spec = plan.desired[rd_name]
            node = nodes.get(spec.node_name)
            future = futures.get(spec.node_name)
            if (node is None and future is None) or (node is not None and _deleting(node)):
                continue
            pool = targets.get(PoolKey(spec.project, spec.zone, spec.runtime_id))
            if self.maintenance is not None and pool is not None:
                claimed = await self.maintenance.claim(spec)
                if claimed is not None:
                    spec = dataclasses.replace(spec, disk_name=claimed)
            if node is None and future is not None and self._preprovisioning is not None:
                await self._preprovisioning.create(rd_name, future, spec.to_dict())
            elif node is not None:
                await self._create_runtimedisk(rd_name, node, spec.to_dict())
        if self._preprovisioning is not None:
            await self._preprovisioning.adopt(_all(idx.runtimedisks), nodes)
        if self.maintenance is not None and (self._refill is None or self._refill.done()):
            # Refill in the background: a new node must not wait for the pool's next disk.
            self._refill = asyncio.create_task(self._guard((_SWEEP, "pool"), self._refill_pool(targets)))
        # A spec the operator cannot parse (CRD skew) must not tear down disks that pods use, and
        # neither may an image that could not be resolved this time.
        if invalid or plan.unresolved:
            return
        pods = await self.kube.list("Pod") if to_delete else []
        waiting = False
        for rd_name in to_delete:
            if _deleting(existing[rd_name]):
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
        if waiting and (self._recheck is None or self._recheck.cancelled()):
            self._recheck = asyncio.get_running_loop().call_later(
                _RETIRE_RECHECK_SECONDS, self._recheck_nodes
            )

    def _recheck_nodes(self) -> None:
        self._recheck = None
        self.mark_all_nodes()

    async def _create_runtimedisk(self, name: str, node: Mapping[str, Any], spec: Json) -> None:
        manifest = placement.runtimedisk_manifest(
            name, node["metadata"]["name"], node["metadata"]["uid"], spec
        )
        created = await self.kube.create(manifest)
        if created is not None:
            log.info("created RuntimeDisk %s for node %s", name, spec["nodeName"])
            await self.kube.patch(
                c.RUNTIMEDISK_KIND,
                name,
                {
                    "status": {
                        "phase": str(Phase.PENDING),
                        "reason": "Created",
                        "message": "Waiting for a disk",
                        "timings": {"nodeCreated": node["metadata"]["creationTimestamp"]},
                    }
                },
                sub="status",
            )

    # --- cloud housekeeping ---------------------------------------------------------------------

    def _zones(self) -> set[tuple[str, str]]:
        """Zones to look after: where nodes or RuntimeDisks are, and where they were since start-up
        (a shared or orphaned disk outlives the zone's last node)."""
        idx = self._require_indexes()
        self._seen_zones.update((d.spec.project, d.spec.zone) for d in self._runtimedisks())
        for node in _all(idx.nodes):
            instance = placement.parse_provider_id(node.get("spec", {}).get("providerID") or "")
            if instance is not None:
                self._seen_zones.add((instance.project, instance.zone))
        return set(self._seen_zones)

    async def _refill_pool(self, targets: Mapping[PoolKey, PoolTarget]) -> None:
        assert self.maintenance is not None
        report = await self.maintenance.refill(targets, self._zones())
        if report.pool_created or report.pool_deleted:
            log.info("warm pool: created %s, deleted %s", report.pool_created, report.pool_deleted)

    async def _sweep(self) -> None:
        assert self.maintenance is not None
        claimed = {d.spec.disk_name for d in self._runtimedisks()}
        zones = self._zones()
        log.info("orphan sweep over %s (%d disks claimed)", sorted(zones), len(claimed))
        deleted = await self.maintenance.sweep(claimed, zones)
        if deleted:
            log.info("orphan sweep deleted %d disks: %s", len(deleted), deleted)

    def sweep_now(self) -> None:
        self._mark((_SWEEP,))

    # --- RuntimeDisk teardown ------------------------------------------------------------------

    async def _reconcile_runtimedisk(self, name: str) -> None:
        idx = self._indexes
        assert idx is not None
        body = _one(idx.runtimedisks, name)
        if body is None:
            return
        if self.provisioner is not None:
            self.provisioner.kick(name)
            return
        if not _deleting(body):
            return
        rd = parse_runtimedisk(body)
        facts = teardown.facts_of(rd, node_exists=_one(idx.nodes, rd.spec.node_name) is not None)
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
