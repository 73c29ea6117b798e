"""The nodes index keeps only what the operator reads of a Node, and only a change to that marks work.

The Node is our kwok node manifest (``sdworker_tools.nodes.gpu_node_manifest``, what the tests and the
benchmark create) as the API server and kwok return it: the API server adds ``uid`` and
``creationTimestamp`` on create (k8s.io/apiserver ``pkg/registry/rest/create.go``,
``FillObjectMetaSystemFields``), a ``resourceVersion`` on every write and the ``managedFields`` of each
writer (``pkg/endpoints/handlers/fieldmanager``); kwok writes ``status.conditions`` with a fresh
``lastHeartbeatTime``, addresses and ``nodeInfo`` (kwok v0.8.0 ``kustomize/stage/node/fast/
node-initialize.yaml`` and ``node-heartbeat-with-lease.yaml``, the stages ``LocalCluster`` runs).
``tests/integration/test_node_events.py`` checks the same against the real API server and operator.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import pytest
from kubernetes.aio import client as aioclient

from sdworker import handlers, view
from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import RuntimeStatus
from sdworker.controller import Controller
from sdworker.domain import status as status_mod
from sdworker.domain.preprovision import adoption, claimed_manifest, future_node
from sdworker.kube.client import Kube
from sdworker_tools.nodes import GpuNodeSpec, gpu_node_manifest
from tests.unit.invalid_runtimedisks import produced_runtimedisk
from tests.unit.invalid_specs import valid_sdworker

Json = dict[str, Any]
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def stored_node(name: str, *, version: int = 1, heartbeat: str = "2026-11-30T04:00:00Z") -> Json:
    """``gpu_node_manifest`` as the API server returns it once kwok has initialised it."""
    body = gpu_node_manifest(GpuNodeSpec(name=name, labels={"test-pool": "a"}))
    body["metadata"].update(
        uid=f"uid-{name}",
        resourceVersion=str(version),
        creationTimestamp="2026-11-30T03:59:58Z",
        managedFields=[
            {
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
            },
            {"manager": "kwok", "operation": "Update", "subresource": "status", "fieldsType": "FieldsV1"},
        ],
    )
    body["status"]["conditions"] = [
        {
            "type": kind,
            "status": "True" if kind == "Ready" else "False",
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": "2026-11-30T03:59:58Z",
            "reason": "",
            "message": "",
        }
        for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
    ]
    body["status"]["addresses"] = [{"address": "10.0.0.1", "type": "InternalIP"}]
    return body


def test_the_projection_answers_every_reader_as_the_whole_node_does() -> None:
    for deleting in (False, True):
        node = stored_node("gpu-a")
        if deleting:
            node["metadata"]["deletionTimestamp"] = "2026-11-30T04:01:00Z"
        projected = view.project_node(node)
        assert len(repr(projected)) < len(repr(node)) / 3  # status, managedFields, annotations left out
        # view.node_info: placement.place, the SDWorker reconcile's matching nodes, the sweeper's zones.
        assert view.node_info(projected) == view.node_info(node)
        assert view.deleting(projected) == view.deleting(node) == deleting
        # placement_pass._create: the new RuntimeDisk's owner (name, uid) and timings.nodeCreated.
        for field in ("name", "uid", "creationTimestamp"):
            assert projected["metadata"][field] == node["metadata"][field]
        # domain.preprovision.adoption: a registered Node adopts the RuntimeDisk made for its NodeClaim.
        claim = {
            "metadata": {"name": "gpu-a", "uid": "claim-uid", "labels": node["metadata"]["labels"]},
            "status": {"providerID": node["spec"]["providerID"]},
        }
        future = future_node(claim)
        assert future is not None
        rd = claimed_manifest(produced_runtimedisk(node="gpu-a"), future)
        assert adoption(rd, projected) == adoption(rd, node)
        assert adoption(rd, projected) is not None


def test_the_projection_does_not_share_labels_with_the_live_body() -> None:
    node = stored_node("gpu-a")
    projected = view.project_node(node)
    node["metadata"]["labels"]["test-pool"] = "b"  # kopf's body is replaced, never edited, but be safe
    assert projected["metadata"]["labels"]["test-pool"] == "a"


@pytest.fixture
def controller() -> Iterator[Controller]:
    """A controller bound to hand-filled indexes; the handlers' marks go to its queue (never run here)."""

    async def make() -> tuple[Controller, Kube]:
        kube = Kube(aioclient.ApiClient())
        return Controller(kube), kube

    made, kube = asyncio.run(make())
    previous = handlers._controller
    handlers._controller = made
    handlers._nodes_marked.clear()
    handlers._placement_marked.clear()
    try:
        yield made
    finally:
        handlers._controller = previous
        asyncio.run(kube.close())


class Marks:
    """Which marks the handlers made: the placement pass and every SDWorker."""

    def __init__(self, controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[str] = []
        monkeypatch.setattr(controller, "mark_node", lambda name: self.made.append(f"node {name}"))
        monkeypatch.setattr(controller, "mark_all_nodes", lambda: self.made.append("placement"))
        monkeypatch.setattr(controller, "mark_all_sdworkers", lambda: self.made.append("sdworkers"))

    def take(self) -> list[str]:
        made, self.made = self.made, []
        return made


def live(body: Json) -> kopf.Body:
    """``body`` as kopf hands it to a handler: a live view over the raw event's object."""
    return kopf.Body(cast(kopf.RawBody, body))


def _call(handler: object) -> Callable[..., Any]:
    """A kopf-decorated handler, called as kopf calls it (kopf types it with all of kopf's kwargs)."""
    assert callable(handler)
    return handler


def indexes(nodes: dict[str, list[Json]], sdworkers: dict[tuple[str, str], list[Json]]) -> Json:
    return {"nodes_idx": nodes, "sdworkers_idx": sdworkers, "runtimedisks_idx": {}, "deployments_idx": {}}


def node_event(idx: Json, body: Json, type_: str | None) -> None:
    """What kopf does with a Node event: the index first (processing.py ``index_resource``), then the
    event handlers."""
    name = body["metadata"]["name"]
    if type_ == "DELETED":
        idx["nodes_idx"].pop(name, None)
    else:
        idx["nodes_idx"][name] = list(_call(handlers.nodes_idx)(name=name, body=live(body)).values())
    _call(handlers.node_event)(name=name, type=type_, **idx)


def test_only_a_change_the_operator_reads_marks_placement_and_the_sdworkers(
    controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = Marks(controller, monkeypatch)
    idx = indexes({}, {})
    node_event(idx, stored_node("gpu-a"), None)  # first seen (the initial listing)
    assert marks.take() == ["node gpu-a", "sdworkers"]
    node_event(idx, stored_node("gpu-a", version=2, heartbeat="2026-11-30T04:10:00Z"), "MODIFIED")
    assert marks.take() == []  # kwok's heartbeat: nothing the operator reads changed
    labelled = stored_node("gpu-a", version=3)
    labelled["metadata"]["labels"]["sdworker.dev/runtime-x"] = "ready"
    node_event(idx, labelled, "MODIFIED")
    assert marks.take() == ["node gpu-a", "sdworkers"]
    going = copy.deepcopy(labelled)
    going["metadata"]["deletionTimestamp"] = "2026-11-30T04:11:00Z"
    node_event(idx, going, "MODIFIED")
    assert marks.take() == ["node gpu-a", "sdworkers"]
    node_event(idx, going, "DELETED")
    assert marks.take() == ["node gpu-a", "sdworkers"]
    assert "gpu-a" not in handlers._nodes_marked
    node_event(idx, stored_node("gpu-a", version=9), "ADDED")  # the same name again: a new node
    assert marks.take() == ["node gpu-a", "sdworkers"]


def with_status(body: Json, *, matching: int, runtime: RuntimeStatus | None) -> Json:
    out = copy.deepcopy(body)
    out["status"] = status_mod.aggregate_status(
        name=body["metadata"]["name"],
        generation=int(body["metadata"].get("generation", 1)),
        desired_replicas=1,
        deployment=None,
        disks=[],
        matching_nodes=matching,
        runtime=runtime,
        previous=(),
        now=NOW,
    ).to_dict()
    return out


def test_an_sdworker_marks_placement_only_when_what_placement_reads_changes(
    controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = Marks(controller, monkeypatch)
    worker = valid_sdworker("sd", "ns")
    worker["metadata"].update(uid="uid-sd", generation=1)
    image = worker["spec"]["runtime"]["image"]
    served = RuntimeStatus(image=image, digest="", runtime_id=naming.runtime_id(image))
    idx = indexes({}, {})

    def event(body: Json, type_: str | None = "MODIFIED") -> list[str]:
        _call(handlers.sdworker_event)(namespace="ns", name="sd", body=live(body), type=type_, **idx)
        return [m for m in marks.take() if m == "placement"]

    assert event(with_status(worker, matching=0, runtime=None), None) == ["placement"]
    # Our own status write with new counts (one per node that gets its disk): placement reads none of it.
    assert event(with_status(worker, matching=3, runtime=None)) == []
    # The runtime it serves is recorded: placement keeps that runtime's disks.
    assert event(with_status(worker, matching=3, runtime=served)) == ["placement"]
    assert event(with_status(worker, matching=4, runtime=served)) == []
    changed = copy.deepcopy(worker)
    changed["metadata"]["generation"] = 2
    changed["spec"]["nodeSelector"] = {"test-pool": "b"}
    assert event(with_status(changed, matching=4, runtime=served)) == ["placement"]
    pinned = copy.deepcopy(changed)
    pinned["metadata"]["annotations"] = {c.ANNOTATION_PIN_RUNTIME: "true"}
    assert event(with_status(pinned, matching=4, runtime=served)) == ["placement"]
    assert event(with_status(pinned, matching=4, runtime=served), "DELETED") == ["placement"]
