"""Karpenter scales kwok GPU nodes backed by compute-simulator instances, and honours the startup taint.

The rig's Karpenter (``sdworker_tools.karpenter``: upstream controllers, the GCE-shaped provider of
``tools/karpenter``) runs against the real control plane and the simulator. Pending GPU pods must
become NodeClaims, instances and Nodes that carry the startup taint (so no pod lands before the
taint goes), GCE-shaped; emptied nodes must go with their instances. Karpenter may launch one node
more than needed (kubernetes-sigs/karpenter#3121), so counts are lower bounds or GPU sums.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sdworker.api import constants
from sdworker_agent import nodepatch
from sdworker_agent.plan import NodePatch
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.karpenter import INSTANCE_LABEL_NODECLAIM, NODEPOOL_LABEL, Karpenter
from sdworker_tools.wait import wait_for

PROJECT = "sdworker-test"
ACCELERATOR = "nvidia-l4"
L4_SHAPES = {"g2-standard-8": 1, "g2-standard-24": 2}  # tools/karpenter/config/instance-types.json
REPLICAS = 3
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.fixture(scope="module")
def sim() -> Iterator[ComputeSim]:
    # API only: Karpenter's instances have no disks here, so no loop devices are needed.
    with ComputeSim(SimConfig(latency="fast", block_devices=False, seed=3)) as s:
        yield s


@pytest.fixture(scope="module")
def karpenter(
    cluster: LocalCluster, sim: ComputeSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Karpenter]:
    k = Karpenter(
        cluster, sim, tmp_path_factory.mktemp("karpenter-logs"), project=PROJECT, consolidate_after="0s"
    )
    k.start()
    yield k
    try:
        k.delete_nodepools()
    finally:
        k.stop()


def karpenter_nodes(core: client.CoreV1Api) -> list[client.V1Node]:
    return list(core.list_node(label_selector=NODEPOOL_LABEL).items)


def has_startup_taint(node: client.V1Node) -> bool:
    return any(t.key == constants.STARTUP_TAINT_KEY for t in node.spec.taints or [])


def remove_startup_taint(core: client.CoreV1Api, name: str) -> bool:
    """What the agent sends (``sdworker_agent.nodepatch.json_patch``): a JSON patch guarded by the
    resourceVersion, so taints Karpenter or the node controller change meanwhile are not lost."""
    node = core.api_client.sanitize_for_serialization(core.read_node(name))
    core.patch_node(name, nodepatch.json_patch(node, NodePatch(remove_taint=True)))
    return True


def gpus(node: client.V1Node) -> int:
    return int(node.status.allocatable.get(constants.GPU_RESOURCE, "0"))


def gpu_deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=REPLICAS,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"cloud.google.com/gke-accelerator": ACCELERATOR},
                    # GKE's GPU taint, as in examples/sdworker.yaml; never the startup taint.
                    tolerations=[
                        client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
                    ],
                    containers=[
                        client.V1Container(
                            name="sd",
                            image="registry.k8s.io/pause:3.10",
                            resources=client.V1ResourceRequirements(limits={constants.GPU_RESOURCE: "1"}),
                        )
                    ],
                ),
            ),
        ),
    )


def pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={name}").items)


def test_pending_gpu_pods_become_gce_nodes_and_go_away(
    karpenter: Karpenter,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    name = "sd"
    assert karpenter_nodes(core) == []
    assert karpenter.instances() == []
    apps.create_namespaced_deployment(namespace, gpu_deployment(name))

    # Scale-out: enough registered GPU capacity for every replica, on nodes that keep the startup
    # taint (Karpenter provisioned for the pods although the taint does not tolerate them).
    def registered() -> list[client.V1Node] | None:
        nodes = [
            n
            for n in karpenter_nodes(core)
            if (n.metadata.labels or {}).get("karpenter.sh/registered") == "true"
        ]
        return nodes if sum(gpus(n) for n in nodes) >= REPLICAS else None

    nodes = wait_for(
        registered, timeout=120, what="Karpenter nodes for 3 GPU pods", describe=karpenter.log_tail
    )
    assert all(has_startup_taint(n) for n in nodes)
    assert all(not p.spec.node_name for p in pods(core, namespace, name)), (
        "a pod ran before the startup taint went"
    )

    instances = {i["name"]: i for i in karpenter.instances()}
    # By providerID: Karpenter registers a Node by the providerID its NodeClaim got at launch.
    claims = {c["status"].get("providerID"): c for c in karpenter.nodeclaims() if c.get("status")}
    for node in nodes:
        node_name, labels = node.metadata.name, node.metadata.labels
        assert RFC1035.match(node_name)
        assert len(node_name) <= 63
        zone = labels["topology.kubernetes.io/zone"]
        assert labels["topology.kubernetes.io/region"] == zone.rsplit("-", 1)[0]
        assert labels["cloud.google.com/gke-accelerator"] == ACCELERATOR
        shape = labels["node.kubernetes.io/instance-type"]
        assert gpus(node) == L4_SHAPES[shape]
        assert node.spec.provider_id == f"gce://{PROJECT}/{zone}/{node_name}"
        # ... backed by a RUNNING simulator instance of that name, zone and machine type.
        instance = instances[node_name]
        assert instance["status"] == "RUNNING"
        assert instance["zone"].endswith(f"/zones/{zone}")
        assert instance["machineType"].endswith(f"/machineTypes/{shape}")
        assert (
            instance["labels"][INSTANCE_LABEL_NODECLAIM] == claims[node.spec.provider_id]["metadata"]["name"]
        )

    # Standing in for the sdworker agent, which removes the taint once the runtime is mounted.
    for node_name in {n.metadata.name for n in nodes}:
        wait_for(
            functools.partial(remove_startup_taint, core, node_name),
            timeout=30,
            what=f"removing the startup taint of {node_name}",
        )

    def all_running() -> list[client.V1Pod] | None:
        current = pods(core, namespace, name)
        ok = len(current) == REPLICAS and all(p.status.phase == "Running" for p in current)
        return current if ok else None

    running = wait_for(all_running, timeout=60, what="3 GPU pods Running", describe=karpenter.log_tail)
    node_names = {n.metadata.name for n in nodes}
    assert {p.spec.node_name for p in running} <= node_names | {
        n.metadata.name for n in karpenter_nodes(core)
    }

    # Scale-in: empty nodes are consolidated; their NodeClaims, Nodes and instances all go.
    apps.patch_namespaced_deployment_scale(namespace=namespace, name=name, body={"spec": {"replicas": 0}})

    def all_gone() -> bool:
        return not karpenter_nodes(core) and not karpenter.nodeclaims() and not karpenter.instances()

    def state() -> dict[str, Any]:
        return {
            "nodes": [n.metadata.name for n in karpenter_nodes(core)],
            "nodeclaims": [c["metadata"]["name"] for c in karpenter.nodeclaims()],
            "instances": [(i["name"], i["status"]) for i in karpenter.instances()],
            "log": karpenter.log_tail(20),
        }

    wait_for(all_gone, timeout=180, what="Karpenter to remove emptied nodes and instances", describe=state)
    # ... through instances.delete, as GCE would be asked (so autoDelete disks would go too).
    deleted = {
        o["targetLink"].rsplit("/", 1)[1]
        for o in karpenter.sim.operations()
        if o["_sim"]["method"] == "instances.delete" and "error" not in o
    }
    assert node_names <= deleted


def test_example_nodepool_is_valid_for_this_karpenter(karpenter: Karpenter) -> None:
    """examples/karpenter-nodepool.yaml's NodePool passes the v1 CRD's schema and CEL rules."""
    example = Path(__file__).resolve().parents[2] / "examples" / "karpenter-nodepool.yaml"
    (pool,) = [d for d in yaml.safe_load_all(example.read_text()) if d and d["kind"] == "NodePool"]
    out = karpenter.cluster.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(pool)
    )
    applied = json.loads(out)
    assert (
        applied["spec"]["template"]["spec"]["startupTaints"]
        == pool["spec"]["template"]["spec"]["startupTaints"]
    )
