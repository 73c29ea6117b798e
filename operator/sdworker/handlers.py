"""The kopf registrations: watch what the operator cares about and hand it to the controller.

Handlers are deliberately thin. Indexes keep an in-memory view of SDWorkers, Nodes, RuntimeDisks,
the Deployments we own and, when Karpenter is installed, its NodeClaims (disks before nodes); kopf
runs no other handler until every index has been fully listed, so the controller never decides from a
half-filled cache (which could delete a RuntimeDisk that is still needed). Event handlers only mark
keys dirty; ``sdworker.controller`` does the level-triggered reconciling in one place.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from typing import Any

import kopf

from sdworker.api import constants as c
from sdworker.controller import Controller, Indexes
from sdworker.domain import preprovision
from sdworker.kube.client import Kube
from sdworker.metrics import Metrics


@dataclass
class Options:
    kubeconfig: str | None = None
    resync_seconds: float = 60.0
    cluster: str = "sdworker"
    cloud: str = "gce"  # gce | none
    compute_endpoint: str | None = None
    anonymous_credentials: bool = False
    write_quota: float = 20.0
    write_burst: int = 5
    sweep_seconds: float = 300.0
    metrics_address: str = "0.0.0.0:9090"
    preprovision: bool = True


OPTIONS = Options()
_controller: Controller | None = None
_metrics: Metrics | None = None
_tasks: list[asyncio.Task[None]] = []


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    # kopf bodies are live views; the controller must see one consistent version of an object.
    return copy.deepcopy(dict(body))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _controller
    settings.posting.level = logging.ERROR  # kopf's per-handler Events are noise; we post transitions.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    global _metrics
    if _metrics is None:  # once per process, even if kopf retries this handler
        _metrics = Metrics()
        _metrics.serve(OPTIONS.metrics_address)
    metrics = _metrics
    kube = await Kube.connect(OPTIONS.kubeconfig)
    cloud = None
    if OPTIONS.cloud == "gce":
        from sdworker.cloud.gce import GceCloud

        cloud = GceCloud(
            api_endpoint=OPTIONS.compute_endpoint,
            anonymous=OPTIONS.anonymous_credentials,
            write_rate=OPTIONS.write_quota,
            write_burst=OPTIONS.write_burst,
            observer=metrics.cloud_call,
        )
        writes = cloud.writes
        metrics.write_wait_from(lambda: writes.waited_seconds)
    _controller = Controller(
        kube,
        cloud=cloud,
        cluster=OPTIONS.cluster,
        resync_seconds=OPTIONS.resync_seconds,
        sweep_seconds=OPTIONS.sweep_seconds,
        metrics=metrics,
        preprovision=OPTIONS.preprovision,
    )
    _tasks.append(asyncio.create_task(_controller.run(), name="sdworker-controller"))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    await asyncio.gather(*_tasks, return_exceptions=True)
    if _controller is not None:
        await _controller.close()


# --- indexes ---------------------------------------------------------------------------------


@kopf.index(c.GROUP, c.VERSION, c.SDWORKER_PLURAL)
def sdworkers_idx(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace or "", name): _snapshot(body)}


@kopf.index("v1", "nodes")
def nodes_idx(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {name: _snapshot(body)}


@kopf.index(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)
def runtimedisks_idx(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {name: _snapshot(body)}


@kopf.index("apps", "v1", "deployments", labels={c.LABEL_APP_MANAGED_BY: c.MANAGED_BY})
def deployments_idx(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Any]:
    return {(namespace or "", name): _snapshot(body)}


# Karpenter's NodeClaims, when Karpenter is installed (disks before nodes: domain/preprovision.py).
# The resource is optional: with scanning off, kopf looks the resources up once at start-up and does
# not watch one that is not served, so without Karpenter this index stays empty (install Karpenter
# before the operator, or restart the operator after installing it).
@kopf.index(preprovision.NODECLAIM_GROUP, preprovision.NODECLAIM_VERSION, preprovision.NODECLAIM_PLURAL)
def nodeclaims_idx(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {name: _snapshot(body)}


def _bind(kwargs: dict[str, Any]) -> Controller:
    assert _controller is not None, "startup handler did not run"
    _controller.bind(
        Indexes(
            sdworkers=kwargs["sdworkers_idx"],
            nodes=kwargs["nodes_idx"],
            runtimedisks=kwargs["runtimedisks_idx"],
            deployments=kwargs["deployments_idx"],
            nodeclaims=kwargs.get("nodeclaims_idx", {}),
        )
    )
    return _controller


# --- events: mark dirty ---------------------------------------------------------------------


@kopf.on.event(c.GROUP, c.VERSION, c.SDWORKER_PLURAL)
def sdworker_event(namespace: str | None, name: str, **kwargs: Any) -> None:
    controller = _bind(kwargs)
    controller.mark_sdworker(namespace or "", name)
    # Its nodeSelector or runtime may have changed: every node's set of runtimes may change.
    controller.mark_all_nodes()


@kopf.on.event("v1", "nodes")
def node_event(name: str, **kwargs: Any) -> None:
    controller = _bind(kwargs)
    controller.mark_node(name)
    controller.mark_all_sdworkers()


@kopf.on.event(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)
def runtimedisk_event(name: str, **kwargs: Any) -> None:
    controller = _bind(kwargs)
    controller.mark_runtimedisk(name)
    controller.mark_all_sdworkers()


@kopf.on.event(preprovision.NODECLAIM_GROUP, preprovision.NODECLAIM_VERSION, preprovision.NODECLAIM_PLURAL)
def nodeclaim_event(**kwargs: Any) -> None:
    # A launched claim may need its node's disks now; a deleted one may leave some to clean up.
    _bind(kwargs).mark_all_nodes()


@kopf.on.event("apps", "v1", "deployments", labels={c.LABEL_APP_MANAGED_BY: c.MANAGED_BY})
def deployment_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    controller = _bind(kwargs)
    owner = labels.get(c.LABEL_SDWORKER)
    if owner and namespace:
        controller.mark_sdworker(namespace, owner)
