"""The operator core against the real control plane: children, scale, RuntimeDisks per node, status.

The operator runs as a process (``python -m sdworker run``); there is no cloud provider here, so
RuntimeDisks must stay Pending: the operator must not fake progress.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from sdworker.api import constants as c
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.nodes import Taint
from sdworker_tools.wait import wait_for
from tests.integration.conftest import CRDS, OperatorProcess
from tests.unit.invalid_specs import valid_sdworker

GROUP, VERSION = "sdworker.dev", "v1alpha1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sdworker.yaml"
pytestmark = pytest.mark.usefixtures("operator")


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_sdworker(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    result: dict[str, Any] = custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "sdworkers", body
    )
    return result


def get_sdworker(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "sdworkers", name
    )
    return result


def patch_sdworker(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    custom(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", name, patch)


def runtimedisks(api: client.ApiClient, node_prefix: str) -> dict[str, dict[str, Any]]:
    items = custom(api).list_cluster_custom_object(GROUP, VERSION, "runtimedisks")["items"]
    return {i["metadata"]["name"]: i for i in items if i["spec"]["nodeName"].startswith(node_prefix)}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


def example_sdworker() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d.get("kind") == "SDWorker"]
    assert len(docs) == 1
    return dict(docs[0])


def test_example_yields_children_that_follow_the_spec(
    cluster: LocalCluster,
    api: client.ApiClient,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    body = example_sdworker()
    name = body["metadata"]["name"]
    sdw = create_sdworker(api, namespace, body)
    policy = client.PolicyV1Api(api)

    dep = wait_for(
        lambda: apps.read_namespaced_deployment(name, namespace),
        timeout=30,
        what="the SD Deployment",
    )
    svc = wait_for(lambda: core.read_namespaced_service(name, namespace), timeout=30, what="the Service")
    pdb = wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget(name, namespace), timeout=30, what="the PDB"
    )
    for child in (dep, svc, pdb):
        (owner,) = child.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "SDWorker",
            name,
            sdw["metadata"]["uid"],
            True,
        )

    pod = dep.spec.template.spec
    container = pod.containers[0]
    assert dep.spec.replicas == body["spec"]["replicas"]
    assert container.image == body["spec"]["webui"]["baseImage"]
    assert container.command == ["/runtime/venv/bin/python", "/runtime/stable-diffusion-webui/launch.py"]
    assert "--skip-prepare-environment" in container.args
    assert container.args[-len(body["spec"]["webui"]["args"]) :] == body["spec"]["webui"]["args"]
    assert "--enable-insecure-extension-access" not in container.args
    runtime_volume = next(v for v in pod.volumes if v.host_path is not None)
    assert runtime_volume.host_path.path.startswith("/mnt/sdworker/")
    runtime_mount = next(m for m in container.volume_mounts if m.name == runtime_volume.name)
    assert (runtime_mount.mount_path, runtime_mount.read_only) == ("/runtime", True)
    assert any(v.empty_dir is not None for v in pod.volumes)
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    for key, value in body["spec"]["nodeSelector"].items():
        assert pod.node_selector[key] == value
    assert not any(k.startswith("sdworker.dev/runtime.") for k in pod.node_selector)
    preferred = pod.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    assert preferred[0].preference.match_expressions[0].key.startswith("sdworker.dev/runtime.")
    assert svc.spec.ports[0].port == body["spec"]["webui"].get("port", 7860)

    # Spec changes flow to the children.
    patch_sdworker(api, namespace, name, {"spec": {"replicas": 3, "webui": {"args": ["--api", "--medvram"]}}})

    def updated() -> bool:
        d = apps.read_namespaced_deployment(name, namespace)
        args = d.spec.template.spec.containers[0].args
        return bool(d.spec.replicas == 3 and args[-2:] == ["--api", "--medvram"])

    wait_for(updated, timeout=30, what="replicas=3 and the new args on the Deployment")

    # kubectl scale goes through the scale subresource.
    cluster.kubectl("scale", "-n", namespace, f"sdworker/{name}", "--replicas=5")
    wait_for(
        lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 5,
        timeout=30,
        what="the Deployment to follow kubectl scale",
    )
    scale = custom(api).get_namespaced_custom_object_scale(GROUP, VERSION, namespace, "sdworkers", name)
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["selector"] == f"app.kubernetes.io/instance={name},sdworker.dev/sdworker={name}"

    # Deleting the SDWorker removes its children (garbage collection of owned objects).
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", name)

    def children_gone() -> bool:
        deps = apps.list_namespaced_deployment(namespace).items
        svcs = core.list_namespaced_service(namespace).items
        pdbs = policy.list_namespaced_pod_disruption_budget(namespace).items
        return not deps and not svcs and not pdbs

    wait_for(children_gone, timeout=60, what="the children to be garbage-collected")


def test_runtimedisks_follow_matching_nodes(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, unique: str
) -> None:
    prefix = f"n-{unique}"[:40]
    selector = {"test-pool": unique}
    first = valid_sdworker("first", namespace)
    first["spec"]["nodeSelector"] = selector
    create_sdworker(api, namespace, first)
    # As in a GKE GPU pool made for sdworker: new nodes carry the startup taint until their runtime
    # is ready, so SD pods cannot run before it (and Ready must stay False here: no agent, no cloud).
    startup = [Taint(c.STARTUP_TAINT_KEY, c.STARTUP_TAINT_VALUE)]
    for i in range(3):
        cluster.add_gpu_node(f"{prefix}-{i}", labels=selector, taints=startup, wait_ready=False)
    cluster.add_gpu_node(
        f"{prefix}-other", labels={"test-pool": "someone-else"}, taints=startup, wait_ready=False
    )

    def three_disks() -> dict[str, dict[str, Any]] | None:
        found = runtimedisks(api, prefix)
        return found if len(found) == 3 else None

    disks = wait_for(
        three_disks,
        timeout=30,
        what="3 RuntimeDisks, one per matching node",
        describe=lambda: sorted(runtimedisks(api, prefix)),
    )
    assert sorted(d["spec"]["nodeName"] for d in disks.values()) == [f"{prefix}-{i}" for i in range(3)]
    for disk in disks.values():
        owner = disk["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Node", disk["spec"]["nodeName"])
        assert set(disk["metadata"]["finalizers"]) == {"sdworker.dev/cloud-disk", "sdworker.dev/unmount"}
        assert disk["spec"]["image"] == first["spec"]["runtime"]["image"]
        # No cloud provider is configured: the operator must not fake progress.
        assert disk.get("status", {}).get("phase", "Pending") == "Pending"

    # A second SDWorker with another runtime adds a second disk on every matching node.
    second = valid_sdworker("second", namespace)
    second["spec"]["nodeSelector"] = selector
    second["spec"]["runtime"]["image"] = "projects/sdworker-test/global/images/sd-runtime-xl-v1"
    create_sdworker(api, namespace, second)
    wait_for(
        lambda: len(runtimedisks(api, prefix)) == 6,
        timeout=30,
        what="6 RuntimeDisks (2 runtimes x 3 nodes)",
        describe=lambda: sorted(runtimedisks(api, prefix)),
    )

    # Deleting a node removes its RuntimeDisks (owner GC + finalizers released by the operator).
    client.CoreV1Api(api).delete_node(f"{prefix}-0")
    wait_for(
        lambda: (
            sorted({d["spec"]["nodeName"] for d in runtimedisks(api, prefix).values()})
            == [f"{prefix}-1", f"{prefix}-2"]
        ),
        timeout=60,
        what="the deleted node's RuntimeDisks to go",
        describe=lambda: sorted(runtimedisks(api, prefix)),
    )
    assert len(runtimedisks(api, prefix)) == 4

    # Deleting an SDWorker removes the disks only it needed.
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", "second")
    wait_for(
        lambda: len(runtimedisks(api, prefix)) == 2,
        timeout=60,
        what="the second runtime's disks to go with its SDWorker",
        describe=lambda: sorted(runtimedisks(api, prefix)),
    )

    # Status: two matching nodes, both still provisioning (no agent, no cloud).
    def provisioning_status() -> dict[str, Any] | None:
        obj = get_sdworker(api, namespace, "first")
        nodes = (obj.get("status") or {}).get("nodes") or {}
        return obj if nodes.get("provisioning") == 2 else None

    obj = wait_for(provisioning_status, timeout=30, what="status.nodes.provisioning == 2")
    runtime_cond = condition(obj, "RuntimeAvailable")
    assert runtime_cond is not None
    assert runtime_cond["status"] == "False"
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    for i in (1, 2):
        client.CoreV1Api(api).delete_node(f"{prefix}-{i}")
    client.CoreV1Api(api).delete_node(f"{prefix}-other")
    wait_for(
        lambda: not runtimedisks(api, prefix), timeout=60, what="all RuntimeDisks to go with their nodes"
    )


def test_events_are_posted_on_transitions_only(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, operator: OperatorProcess
) -> None:
    body = valid_sdworker("quiet", namespace)
    body["spec"]["nodeSelector"] = {"test-pool": f"nothing-{namespace}"}
    create_sdworker(api, namespace, body)

    def reasons() -> list[str]:
        selector = "involvedObject.kind=SDWorker,involvedObject.name=quiet"
        return sorted(e.reason for e in core.list_namespaced_event(namespace, field_selector=selector).items)

    def settled() -> bool:
        progressing = condition(get_sdworker(api, namespace, "quiet"), "Progressing")
        # No node matches: pods are created but stay Pending, which is the steady state.
        return progressing is not None and progressing["reason"] == "ScalingReplicas"

    wait_for(settled, timeout=30, what="the SDWorker to settle", describe=reasons)
    first = wait_for(reasons, timeout=10, what="Events for the settled SDWorker")
    assert "NoMatchingNodes" in first

    # Touch it without changing what it means: every touch is reconciled, none is a transition.
    for i in range(3):
        patch_sdworker(api, namespace, "quiet", {"metadata": {"annotations": {"touch": str(i)}}})
    # The operator works through one ordered queue: once a later object is reconciled, so are the touches.
    create_sdworker(api, namespace, valid_sdworker("sentinel", namespace))
    wait_for(
        lambda: condition(get_sdworker(api, namespace, "sentinel"), "Ready"),
        timeout=30,
        what="the sentinel to be reconciled",
    )
    assert reasons() == first


def test_invalid_spec_stored_under_an_older_schema_degrades_without_crashing(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, operator: OperatorProcess, crds: list[str]
) -> None:
    """CRD skew: an object stored under a looser schema reaches the operator, which re-validates it."""
    ext = client.ApiextensionsV1Api(api)
    crd = ext.read_custom_resource_definition("sdworkers.sdworker.dev")
    loose = client.ApiClient().sanitize_for_serialization(crd)
    for version in loose["spec"]["versions"]:
        props = version["schema"]["openAPIV3Schema"]["properties"]
        props["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        version["subresources"].pop("scale", None)
    loose["metadata"] = {"name": crd.metadata.name, "resourceVersion": crd.metadata.resource_version}
    body = valid_sdworker("skewed", namespace)
    body["spec"]["runtime"]["diskSizeGb"] = 3
    ext.replace_custom_resource_definition(crd.metadata.name, loose)
    try:
        wait_for(
            lambda: create_sdworker(api, namespace, body),
            timeout=30,
            what="the loose schema to accept a 3 GB disk",
        )
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))

    def degraded_object() -> dict[str, Any] | None:
        found = get_sdworker(api, namespace, "skewed")
        return found if condition(found, "Degraded") else None

    obj = wait_for(
        degraded_object,
        timeout=30,
        what="Degraded on the skewed SDWorker",
    )
    degraded = condition(obj, "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.runtime.diskSizeGb" in degraded["message"]
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("skewed", namespace)
    assert missing.value.status == 404
    assert operator.proc is not None
    assert operator.proc.alive()
