"""The admission policy confines the agent to its own node, proven with the real API server's 403s.

The agent's ServiceAccount, RBAC and ValidatingAdmissionPolicies come from ``daemonset/manifests``. The
agent's identity is what the kubelet gives its pod: a token bound to a pod scheduled on node A, which the
API server extends with ``authentication.kubernetes.io/node-name: A``. RBAC lets that identity patch any
Node and RuntimeDisk; the policy must take everything back except its own node's objects and the few fields
the agent owns.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker_agent import nodepatch
from sdworker_agent.plan import NodePatch
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.wait import wait_for
from tests.integration.test_agent_support import (
    Harness,
    RuntimeImage,
    api_as,
    api_error,
    as_list,
    manifest_docs,
)

NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
Json = dict[str, Any]


@pytest.fixture
def harness(
    cluster: LocalCluster, api: client.ApiClient, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[Harness]:
    h = Harness(cluster, api, None, namespace, f"h{uuid.uuid4().hex[:6]}", tmp_path)
    try:
        yield h
    finally:
        h.close()


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    """``(status, message)`` of a call the server refuses; ``(200, "")`` if it is allowed."""
    try:
        call()
    except client.ApiException as exc:
        return int(exc.status), str(api_error(exc).get("message", ""))
    return 200, ""


def refused_by_policy(call: Callable[[], object], policy: str) -> tuple[int, str] | None:
    status, message = refusal(call)
    return (status, message) if f"ValidatingAdmissionPolicy '{policy}" in message else None


def fake_image(name: str) -> RuntimeImage:
    return RuntimeImage(name=name, path=Path("/nonexistent"), digest="sha256:" + "1" * 64, model_bytes=0)


def test_the_agent_may_patch_only_its_own_node_and_its_own_runtimedisks(
    harness: Harness, unique: str
) -> None:
    h = harness
    a, b = h.add_node(f"{unique}-a"), h.add_node(f"{unique}-b")
    h.install(["rbac.yaml", "admission-policy.yaml"])
    node_policy, rd_policy = (
        f"sdworker-agent-own-node-{h.suffix}",
        f"sdworker-agent-own-runtimedisks-{h.suffix}",
    )
    image = fake_image(f"rt-{h.suffix}")
    # No simulator here to resolve the image from: the RuntimeDisks name the image's digest themselves.
    rd_a, rd_b = (h.create_runtimedisk(n, image, digest=image.digest) for n in (a, b))
    label = naming.runtime_ready_label(image.runtime_id)
    pod = h.agent_pod(a)
    kubeconfig = h.kubeconfig_for("agent-a", h.token("sdworker-agent", pod))

    with api_as(kubeconfig) as agent_api:
        review = client.AuthenticationV1Api(agent_api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        user = review.status.user_info
        assert user.username == f"system:serviceaccount:{h.namespace}:sdworker-agent"
        assert user.extra[NODE_NAME_EXTRA] == [a]
        assert user.extra["authentication.kubernetes.io/pod-name"] == [pod["metadata"]["name"]]
        core, custom = client.CoreV1Api(agent_api), client.CustomObjectsApi(agent_api)

        # Another node: refused by the policy (which also proves RBAC already allowed it).
        status, message = wait_for(
            lambda: refused_by_policy(
                lambda: core.patch_node(b, {"metadata": {"labels": {label: "ready"}}}), node_policy
            ),
            timeout=60,
            what="the admission policy to refuse node B",
        )
        assert status == 403
        assert f"the sdworker agent on node {a} may only modify its own Node, not {b}" in message

        # Its own node: the runtime label and the startup taint's removal are allowed, as the agent sends
        # them (``nodepatch.json_patch``), and as a plain merge patch too.
        for change in (NodePatch(set_labels=(label,)), NodePatch(remove_taint=True)):
            core.patch_node(a, nodepatch.json_patch(h.node(a), change))
        assert (h.labels(a)[label], h.tainted(a)) == ("ready", False)
        core.patch_node(a, nodepatch.json_patch(h.node(a), NodePatch(remove_labels=(label,))))
        assert label not in h.labels(a)
        core.patch_node(a, {"metadata": {"labels": {label: "ready"}}})
        core.patch_node(a, {"metadata": {"labels": {label: None}}})
        assert label not in h.labels(a)

        # ... and nothing else about it.
        own_node_refusals: list[tuple[object, str]] = [
            (
                {"metadata": {"labels": {"team": "evil"}}},
                "may only set labels sdworker.dev/runtime.<runtime-id>=ready",
            ),
            (
                {"metadata": {"labels": {label: "yes"}}},
                "may only set labels sdworker.dev/runtime.<runtime-id>=ready",
            ),
            (
                {"metadata": {"labels": {"kubernetes.io/hostname": None}}},
                "every other label must stay as it is",
            ),
            ({"spec": {"unschedulable": True}}, "may change only its runtime labels and the startup taint"),
            (
                {"metadata": {"annotations": {"x": "y"}}},
                "may change only its runtime labels and the startup taint",
            ),
            (
                [{"op": "add", "path": "/spec/taints/-", "value": {"key": "evict", "effect": "NoExecute"}}],
                "may only remove the startup taint",
            ),
            (
                [{"op": "replace", "path": "/spec/taints", "value": []}],  # removes nvidia.com/gpu too
                "may only remove the startup taint",
            ),
        ]
        for patch, expected in own_node_refusals:
            status, message = refusal(functools.partial(core.patch_node, a, patch))
            assert (status, expected in message) == (403, True), (patch, message)

        # RuntimeDisks: its own node's status and finalizer, not another node's.
        def rd_status(name: str, phase: str) -> Callable[[], object]:
            """A status write as the agent makes it (``kube.status.update_status``): the object as read,
            its status subresource replaced, guarded by the resourceVersion read."""

            def write() -> object:
                obj = custom.get_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name)
                obj["status"] = {**(obj.get("status") or {}), "phase": phase}
                return custom.replace_cluster_custom_object_status(
                    c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, obj
                )

            return write

        assert refusal(rd_status(rd_a, "Mounting")) == (200, "")
        # Least privilege: the one way it writes status is the one RBAC grants.
        status, message = refusal(
            lambda: custom.patch_cluster_custom_object_status(
                c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, rd_a, {"status": {"phase": "Ready"}}
            )
        )
        assert (status, 'cannot patch resource "runtimedisks/status"' in message) == (403, True), message
        status, message = refusal(rd_status(rd_b, "Mounting"))
        assert status == 403
        assert f"ValidatingAdmissionPolicy '{rd_policy}" in message
        assert f"may only modify RuntimeDisks of its own node, not {rd_b} (spec.nodeName {b})" in message
        status, message = refusal(rd_status(rd_a, "Detaching"))
        assert (status, "may set phase Mounting, Ready or Failed, not Detaching" in message) == (403, True)

        def drop(name: str, keep: list[str]) -> Callable[[], object]:
            return lambda: custom.patch_cluster_custom_object(
                c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"metadata": {"finalizers": keep}}
            )

        status, message = refusal(drop(rd_a, [c.FINALIZER_UNMOUNT]))  # the operator's finalizer
        assert (status, "may only remove its own finalizer sdworker.dev/unmount" in message) == (403, True)
        status, message = refusal(drop(rd_b, [c.FINALIZER_CLOUD_DISK]))
        assert (status, f"not {rd_b} (spec.nodeName {b})" in message) == (403, True)
        assert refusal(drop(rd_a, [c.FINALIZER_CLOUD_DISK])) == (200, "")
        assert h.runtimedisk(rd_a)["metadata"]["finalizers"] == [c.FINALIZER_CLOUD_DISK]  # type: ignore[index]

    # A token bound to no pod names no node: refused everything, even on node A.
    with api_as(h.kubeconfig_for("unbound", h.token("sdworker-agent"))) as unbound_api:
        status, message = refusal(
            lambda: client.CoreV1Api(unbound_api).patch_node(a, {"metadata": {"labels": {label: "ready"}}})
        )
        assert status == 403
        assert "the sdworker agent's token names no node" in message


def test_the_fallback_per_node_identity_is_confined_the_same_way(harness: Harness, unique: str) -> None:
    h = harness
    a, b = h.add_node(f"{unique}-a"), h.add_node(f"{unique}-b")
    docs = h.install(["rbac.yaml", "admission-policy.yaml"])
    cluster_role = next(d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole")
    account = f"sdworker-agent-node-{a}"
    extra: list[Json] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": h.namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"sdworker-agent-node-{h.suffix}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": h.namespace}],
        },
    ]
    h.apply(extra)
    label = naming.runtime_ready_label("rt-fallback-00000000")
    with api_as(h.kubeconfig_for("per-node", h.token(account))) as node_api:
        core = client.CoreV1Api(node_api)
        status, message = wait_for(
            lambda: refused_by_policy(
                lambda: core.patch_node(b, {"metadata": {"labels": {label: "ready"}}}),
                f"sdworker-agent-own-node-{h.suffix}",
            ),
            timeout=60,
            what="the admission policy to refuse node B to the per-node identity of A",
        )
        assert status == 403
        assert f"the sdworker agent on node {a} may only modify its own Node, not {b}" in message
        core.patch_node(a, {"metadata": {"labels": {label: "ready"}}})
        assert h.labels(a)[label] == "ready"


def policy_status(cluster: LocalCluster, name: str) -> Json | None:
    """The policy's status once the API server has type-checked it (``typeChecking`` present)."""
    status: Json = json.loads(cluster.kubectl("get", "validatingadmissionpolicy", name, "-o", "json")).get(
        "status", {}
    )
    return status if "typeChecking" in status else None


def test_the_api_server_accepts_every_manifest(harness: Harness) -> None:
    h = harness
    docs = manifest_docs(h.namespace, h.suffix, ["rbac.yaml", "admission-policy.yaml", "daemonset.yaml"])
    out = h.cluster.kubectl("apply", "--dry-run=server", "-f", "-", input_text=as_list(docs))
    assert "daemonset.apps/sdworker-agent created (server dry run)" in out
    # Type-checking the CEL against the Node and RuntimeDisk schemas finds nothing to warn about.
    policies = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    h.apply(policies)
    for policy in policies:
        name = policy["metadata"]["name"]
        status = wait_for(
            functools.partial(policy_status, h.cluster, name),
            timeout=30,
            what=f"the API server to type-check {name}",
        )
        assert not status["typeChecking"].get("expressionWarnings"), status
