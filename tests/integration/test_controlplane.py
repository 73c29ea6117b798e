"""The local control plane behaves like a real cluster: scheduling, controllers, RBAC, CEL, taints.

These are the guarantees every operator test relies on, checked against the real components.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sdworker_tools.cluster import LocalCluster
from sdworker_tools.nodes import GPU_RESOURCE, Taint
from sdworker_tools.wait import wait_for


def gpu_deployment(name: str, node_label: str, *, replicas: int, gpus: int = 1) -> dict[str, Any]:
    """A Deployment whose pods need ``gpus`` GPUs on nodes labelled ``test-pool=<node_label>``."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"test-pool": node_label},
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.example/app:1",
                            "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def pods_of(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def running_on(core: client.CoreV1Api, namespace: str, app: str, count: int) -> list[client.V1Pod]:
    pods = pods_of(core, namespace, app)
    running = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
    return running if len(running) == count else []


def unschedulable_reason(core: client.CoreV1Api, namespace: str, app: str) -> str:
    for pod in pods_of(core, namespace, app):
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return str(cond.message)
    return ""


def describe_pods(core: client.CoreV1Api, namespace: str, app: str) -> list[tuple[str, str, str]]:
    return [(p.metadata.name, p.status.phase, p.spec.node_name) for p in pods_of(core, namespace, app)]


def test_control_plane_is_real_and_stamped(cluster: LocalCluster, api: client.ApiClient) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version == "v1.36.3"
    names = sorted(p.name for p in cluster.processes())
    assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    assert all(p.alive() for p in cluster.processes())
    assert cluster.timings.ready > 0
    # Loopback only: every listening socket of ours is on 127.0.0.1.
    apiserver_args = next(p.argv for p in cluster.processes() if p.name == "kube-apiserver")
    assert "--bind-address=127.0.0.1" in apiserver_args
    assert "--authorization-mode=Node,RBAC" in apiserver_args


def test_gpu_pods_scheduled_on_kwok_gpu_node(
    cluster: LocalCluster, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, unique: str
) -> None:
    node = f"gpu-{unique}"
    cluster.add_gpu_node(node, gpus=2, zone="us-central1-b", labels={"test-pool": unique})
    created = core.read_node(node)
    assert created.spec.provider_id == f"gce://sdworker-test/us-central1-b/{node}"
    assert created.metadata.labels["topology.kubernetes.io/zone"] == "us-central1-b"
    assert created.status.allocatable[GPU_RESOURCE] == "2"

    apps.create_namespaced_deployment(namespace, gpu_deployment("sd", unique, replicas=2))
    pods = wait_for(
        lambda: running_on(core, namespace, "sd", 2),
        timeout=60,
        what="2 GPU pods Running on the kwok node",
        describe=lambda: describe_pods(core, namespace, "sd"),
    )
    assert {p.spec.node_name for p in pods} == {node}
    wait_for(
        lambda: apps.read_namespaced_deployment_status("sd", namespace).status.ready_replicas == 2,
        timeout=30,
        what="Deployment sd to report 2 ready replicas",
    )

    # Both GPUs are taken: a third GPU pod fits nowhere and the scheduler says why.
    apps.create_namespaced_deployment(namespace, gpu_deployment("greedy", unique, replicas=1))
    reason = wait_for(
        lambda: unschedulable_reason(core, namespace, "greedy"),
        timeout=30,
        what="the scheduler to mark the pod Unschedulable",
        describe=lambda: describe_pods(core, namespace, "greedy"),
    )
    assert f"Insufficient {GPU_RESOURCE}" in reason
    assert pods_of(core, namespace, "greedy")[0].status.phase == "Pending"
    core.delete_node(node)


def test_namespace_deletion_completes(core: client.CoreV1Api, unique: str) -> None:
    ns = f"gone-{unique}"[:63]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for(gone, timeout=60, what=f"namespace {ns} to finish terminating")


def test_owner_reference_garbage_collection(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid, block_owner_deletion=True
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace)

    def names() -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]

    wait_for(lambda: "child" not in names(), timeout=60, what="the garbage collector to delete child")
    assert "owner" not in names()


def test_rbac_refuses_service_account_without_permission(
    cluster: LocalCluster, core: client.CoreV1Api, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    kubeconfig = cluster.write_token_kubeconfig(tmp_path / "reader.kubeconfig", token)
    with config.new_client_from_config(config_file=str(kubeconfig)) as as_reader:
        reader = client.CoreV1Api(as_reader)
        # The role binding propagates through the RBAC authorizer's informer: wait for it.
        wait_for(
            lambda: reader.list_namespaced_config_map(namespace) is not None,
            timeout=30,
            what="the reader to be allowed to list configmaps",
        )
        with pytest.raises(ApiException) as denied:
            reader.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        body = json.loads(denied.value.body)
        assert body["reason"] == "Forbidden"
        assert f"system:serviceaccount:{namespace}:reader" in body["message"]
        with pytest.raises(ApiException) as denied_nodes:
            reader.list_node()
        assert denied_nodes.value.status == 403


CEL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "ranges.test.sdworker.dev"},
    "spec": {
        "group": "test.sdworker.dev",
        "scope": "Namespaced",
        "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "min": {"type": "integer"},
                                    "max": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.min <= self.max",
                                        "message": "min must not exceed max",
                                        "fieldPath": ".min",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_cel_rule_rejects_violating_object(api: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(CEL_CRD)
    except ApiException as exc:
        if exc.status != 409:  # created by an earlier run in the same session
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition("ranges.test.sdworker.dev")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    wait_for(established, timeout=30, what="the test CRD to be Established")
    custom = client.CustomObjectsApi(api)

    def create(name: str, lo: int, hi: int) -> object:
        body = {"apiVersion": "test.sdworker.dev/v1", "kind": "Range", "metadata": {"name": name}}
        body["spec"] = {"min": lo, "max": hi}
        return custom.create_namespaced_custom_object("test.sdworker.dev", "v1", namespace, "ranges", body)

    # Discovery of a fresh CRD lags Established by a moment; the valid create proves it is served.
    wait_for(lambda: create("ok", 1, 2), timeout=30, what="a valid Range to be accepted")
    with pytest.raises(ApiException) as rejected:
        create("bad", 5, 2)
    assert rejected.value.status == 422
    status = json.loads(rejected.value.body)
    assert "min must not exceed max" in status["message"]
    assert status["details"]["causes"][0]["field"] == "spec.min"


def test_noschedule_taint_keeps_pods_off_until_removed(
    cluster: LocalCluster, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, unique: str
) -> None:
    node = f"tainted-{unique}"
    taint = Taint("startup-taint.cluster-autoscaler.kubernetes.io/sdworker", "pending")
    cluster.add_gpu_node(node, taints=[taint], labels={"test-pool": unique})
    apps.create_namespaced_deployment(namespace, gpu_deployment("held", unique, replicas=1))
    reason = wait_for(
        lambda: unschedulable_reason(core, namespace, "held"),
        timeout=30,
        what="the pod to be held back by the taint",
        describe=lambda: describe_pods(core, namespace, "held"),
    )
    assert "had untolerated taint" in reason

    core.patch_node(node, {"spec": {"taints": []}})
    pods = wait_for(
        lambda: running_on(core, namespace, "held", 1),
        timeout=60,
        what="the pod to schedule once the taint is gone",
        describe=lambda: describe_pods(core, namespace, "held"),
    )
    assert pods[0].spec.node_name == node
    core.delete_node(node)
