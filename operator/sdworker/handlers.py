"""The kopf registrations: watch what the operator cares about and hand it to the controller.

Handlers are deliberately thin. Indexes keep an in-memory view of SDWorkers, Nodes, RuntimeDisks,
the Deployments we own and, when Karpenter is installed, its NodeClaims (disks before nodes); kopf
runs no other handler until every index has been fully listed, so the controller never decides from a
half-filled cache (which could delete a RuntimeDisk that is still needed). The Node index holds only what
the operator reads of a Node (``view.project_node``), the others their objects without managedFields. Event
handlers only mark keys dirty, and only for a change the marked work reads (issue 15: at 1000 nodes, status
updates each started a pass over every node); ``sdworker.controller`` does the level-triggered reconciling
in one place, and its periodic resync marks everything regardless. With ``--peering``
the startup handler also starts the leadership watcher (``sdworker.leadership``), since kopf's pause of a
standby replica stops these handlers but not the controller's own loops.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf

from sdworker import view
from sdworker.api import constants as c
from sdworker.config import OperatorConfig
from sdworker.controller import Controller, Indexes
from sdworker.domain import preprovision
from sdworker.kube.client import Kube
from sdworker.leadership import PeeringWatcher
from sdworker.metrics import Metrics

# Runtime state of this process (not configuration: that arrives whole, in ``memo``, at startup).
_controller: Controller | None = None
_metrics: Metrics | None = None
_tasks: list[asyncio.Task[None]] = []
# Node name -> the projection its last marking event had (the same object the nodes index holds), and
# SDWorker key -> what placement read of it when it last marked the placement pass (``_changed``).
_nodes_marked: dict[str, dict[str, Any]] = {}
_placement_marked: dict[tuple[str, str], dict[str, Any]] = {}


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    # kopf bodies are live views; the controller must see one consistent version of an object. Without
    # ``metadata.managedFields``, which nothing of ours reads (most of a RuntimeDisk copy: 1000 of them
    # took 6.2 MB with it, 1.8 MB without).
    raw = dict(body)
    metadata = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}
    return copy.deepcopy({**raw, "metadata": metadata})


def memo_of(config: OperatorConfig, *, identity: str = "", priority: int = 0) -> kopf.Memo:
    """What ``kopf.run(memo=...)`` gets: the startup handler reads the configuration from it, and with
    ``--peering`` this replica's kopf identity and priority (those ``kopf.run`` got)."""
    return kopf.Memo(config=config, identity=identity, priority=priority)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    global _controller
    config = memo["config"]
    assert isinstance(config, OperatorConfig), "kopf.run(memo=handlers.memo_of(config))"
    settings.posting.level = logging.ERROR  # kopf's per-handler Events are noise; we post transitions.
    if not config.verbose:  # and so are its two INFO lines per watch event ("Indexer/Handler succeeded")
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    global _metrics
    if _metrics is None:  # once per process, even if kopf retries this handler
        _metrics = Metrics()
        _metrics.serve(config.metrics_address)
    metrics = _metrics
    kube = await Kube.connect(config.kubeconfig)
    cloud = None
    project = config.project
    if config.cloud == "gce":
        from sdworker.cloud.gce import GceCloud, adc_project

        cloud = GceCloud(
            api_endpoint=config.compute_endpoint,
            anonymous=config.anonymous_credentials,
            write_rate=config.write_quota,
            write_burst=config.write_burst,
            threads=config.cloud_threads,
            observer=metrics.cloud_call,
        )
        writes = cloud.writes
        metrics.write_wait_from(lambda: writes.waited_seconds)
        if project is None and not config.anonymous_credentials:
            project = await adc_project()
    _controller = Controller(
        kube,
        cloud=cloud,
        cluster=config.cluster_name,
        resync_seconds=config.resync_seconds,
        sweep_seconds=config.sweep_seconds,
        failed_retry_seconds=config.failed_retry_seconds,
        metrics=metrics,
        preprovision=config.preprovision,
        project=project,
        # With peering the controller's loops wait until the watcher finds this replica the active one.
        leader=not config.peering,
    )
    _tasks.append(asyncio.create_task(_controller.run(), name="sdworker-controller"))
    if config.peering:
        watcher = PeeringWatcher(
            kube,
            _controller.gate,
            name=config.peering,
            identity=str(memo["identity"]),
            priority=int(memo["priority"]),
        )
        _tasks.append(asyncio.create_task(watcher.run(), name="sdworker-leadership"))


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
    # Only what the operator reads of a Node (``view.project_node``), not its status, images, managedFields.
    return {name: view.project_node(body)}


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


def _changed(marked: dict[Any, Any], key: object, projection: object, *, gone: bool) -> bool:
    """Whether ``key``'s ``projection`` (what the marked work reads of it) differs from the one it last
    marked with; remembers it. Gone (deleted) always counts as a change. The periodic resync marks
    everything anyway, so a skipped mark never leaves the cluster wrong for longer than one resync."""
    if gone or projection is None:
        marked.pop(key, None)
        return True
    if marked.get(key) == projection:
        return False
    marked[key] = projection
    return True


@kopf.on.event(c.GROUP, c.VERSION, c.SDWORKER_PLURAL)
def sdworker_event(
    namespace: str | None, name: str, body: kopf.Body, type: str | None, **kwargs: Any
) -> None:
    controller = _bind(kwargs)
    controller.mark_sdworker(namespace or "", name)
    # Its nodeSelector or runtime may have changed: every node's set of runtimes may change. Not so when
    # only its status counts changed (our own status writes, one per RuntimeDisk that gets Ready).
    key = (namespace or "", name)
    if _changed(_placement_marked, key, view.placement_inputs(body), gone=type == "DELETED"):
        controller.mark_all_nodes()


@kopf.on.event("v1", "nodes")
def node_event(name: str, type: str | None, **kwargs: Any) -> None:
    controller = _bind(kwargs)
    # kopf indexes an event before it calls the event handlers: the index holds this event's projection.
    # One equal to the last one marked (a status-only update: kwok's heartbeats, the kubelet's conditions)
    # changes nothing the operator reads, so it marks nothing.
    projection = view.one(kwargs["nodes_idx"], name)
    if _changed(_nodes_marked, name, projection, gone=type == "DELETED"):
        controller.mark_node(name)
        controller.mark_all_sdworkers()


@kopf.on.event(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)
def runtimedisk_event(name: str, body: kopf.Body, **kwargs: Any) -> None:
    # Only the SDWorkers whose status counts this RuntimeDisk are marked, not every one (read now, so
    # the live body needs no copy).
    _bind(kwargs).mark_runtimedisk(name, body)


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
