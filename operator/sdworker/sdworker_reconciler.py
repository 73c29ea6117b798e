"""Reconciling one SDWorker: its Deployment, Service and PDB, its rollout, and its status.

The controller's queue runs this per SDWorker key. It decides from the indexes (``sdworker.view``) and
the pure decisions (``domain.render``, ``domain.rollout``, ``domain.status``), applies the children
server-side (skipping a manifest identical to the one last applied), writes the status when it changed and
posts Events on condition and rollout transitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sdworker import view
from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import (
    SpecError,
    parse_conditions,
    parse_rollout_status,
    parse_runtime_status,
    parse_sdworker,
)
from sdworker.api.types import ResolvedImage, RolloutStatus, RuntimeDisk, RuntimeStatus, SDWorker
from sdworker.domain import placement, render, rollout
from sdworker.domain import status as status_mod
from sdworker.kube.client import Kube
from sdworker.provisioning import ImageResolver

COMPONENT = "sdworker-operator"
Json = dict[str, Any]
# An image reference -> the concrete image and digest (the cloud layer's job); None: not yet known.
Resolver = Callable[[str], Awaitable[ResolvedImage | None]]


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _pod_runtime(pod: Mapping[str, Any]) -> str | None:
    value = (pod.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_RUNTIME_ID)
    return str(value) if value is not None else None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conditions)


@dataclass
class SDWorkerReconciler:
    kube: Kube
    observed: view.View
    resolver: Resolver
    images: ImageResolver | None
    now: Callable[[], datetime]
    runtime_changed: Callable[[], None]  # an SDWorker's served runtime changed: placement retires the old one
    _applied: dict[tuple[str, str, str], str] = field(default_factory=dict, init=False)

    def forget_applied(self) -> None:
        """Re-apply every child next time: someone may have edited or deleted them."""
        self._applied.clear()

    async def reconcile(self, namespace: str, name: str) -> None:
        idx = self.observed.indexes
        body = view.one(idx.sdworkers, (namespace, name))
        if body is None or view.deleting(body):
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
                for n in map(view.node_info, view.every(idx.nodes))
                if not n.deleting and placement.selector_matches(worker.spec.node_selector, n.labels)
            ]
            matching = len(nodes)
            names = {n.name for n in nodes}
            on_nodes = [d for d in self.observed.runtimedisks() if d.spec.node_name in names]
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
                    self.runtime_changed()  # the old runtime is no longer wanted: placement retires it
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
            digest = _digest(manifest)
            if self._applied.get(key) == digest:
                continue
            await self.kube.apply(manifest)
            self._applied[key] = digest

    def _deployment_observation(self, namespace: str, name: str) -> status_mod.DeploymentObservation | None:
        dep = view.one(self.observed.indexes.deployments, (namespace, name))
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
        dep = view.one(self.observed.indexes.deployments, (namespace, name))
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
        return sum(_pod_runtime(p) == runtime_id and _pod_ready(p) and not view.deleting(p) for p in pods)
