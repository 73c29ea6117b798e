"""Changes the operator reads still reach it at once, now that other Node and SDWorker updates mark nothing.

The operator marks the placement pass only when what it reads of a Node (``view.project_node``) or of an
SDWorker (``view.placement_inputs``) changed (issue 15: kwok's and the agents' status updates, and our own
SDWorker status writes, each used to start a pass over every node). Here its periodic resync is an hour, so
every change below must be acted on from its own event: a node relabelled into and out of the selector
(after kwok's status writes, which mark nothing), and an SDWorker's selector moved to another node.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.nodes import Taint
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.test_operator_core import create_sdworker, patch_sdworker, runtimedisks
from tests.unit.invalid_specs import valid_sdworker

# Far longer than any wait below: only the changes' own events can make the operator act in time.
RESYNC = "--resync-seconds=3600"
WAIT = 30
STARTUP = [Taint(c.STARTUP_TAINT_KEY, c.STARTUP_TAINT_VALUE)]


@pytest.fixture(scope="module")
def operator(
    cluster: LocalCluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster, tmp_path_factory.mktemp("operator-logs"), ["--cloud=none", RESYNC])
    op.start()
    yield op
    op.stop()


def label(cluster: LocalCluster, node: str, key: str, value: str | None) -> None:
    cluster.kubectl("label", "node", node, f"{key}-" if value is None else f"{key}={value}", "--overwrite")


def nodes_with_disks(api: client.ApiClient, prefix: str) -> list[str]:
    return sorted(d["spec"]["nodeName"] for d in runtimedisks(api, prefix).values())


def test_label_and_selector_changes_are_acted_on_without_a_resync(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, unique: str, operator: OperatorProcess
) -> None:
    prefix = f"ev-{unique}"[:40]
    a, b = f"{prefix}-a", f"{prefix}-b"
    worker = valid_sdworker("events", namespace)
    worker["spec"]["nodeSelector"] = {"pool-a": unique}
    create_sdworker(api, namespace, worker)
    try:
        # As in a GPU pool made for sdworker, the startup taint keeps SD pods off (no agent lifts it here),
        # so no pod holds a runtime that is to go. ``a`` matches nothing yet; kwok writes both statuses.
        cluster.add_gpu_node(a, taints=STARTUP)
        cluster.add_gpu_node(b, labels={"pool-b": unique}, taints=STARTUP)
        moves(cluster, api, namespace, unique, a, b)
    finally:
        for node in (a, b):
            cluster.kubectl("delete", "node", node, "--ignore-not-found")


def moves(cluster: LocalCluster, api: client.ApiClient, namespace: str, unique: str, a: str, b: str) -> None:
    prefix = a.rsplit("-", 1)[0]

    def disks_on(expected: list[str]) -> bool:
        return nodes_with_disks(api, prefix) == expected

    def describe() -> object:
        return {
            name: (
                d["spec"]["nodeName"],
                d["metadata"].get("deletionTimestamp"),
                d["metadata"].get("finalizers"),
            )
            for name, d in runtimedisks(api, prefix).items()
        }

    label(cluster, a, "pool-a", unique)
    wait_for(
        lambda: disks_on([a]),
        timeout=WAIT,
        what=f"a RuntimeDisk for {a} once it is labelled",
        describe=describe,
    )

    # The SDWorker's selector moves to the other node: its disk is made, the old one's deleted.
    selector = {"pool-a": None, "pool-b": unique}  # a merge patch: None drops the old key
    patch_sdworker(api, namespace, "events", {"spec": {"nodeSelector": selector}})
    wait_for(
        lambda: disks_on([b]),
        timeout=WAIT,
        what=f"the RuntimeDisk to move from {a} to {b}",
        describe=describe,
    )

    # The node leaves the selector: its disk goes.
    label(cluster, b, "pool-b", None)
    wait_for(
        lambda: disks_on([]),
        timeout=WAIT,
        what=f"{b}'s RuntimeDisk to go once it is unlabelled",
        describe=describe,
    )
