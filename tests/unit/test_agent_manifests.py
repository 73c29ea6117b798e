"""The agent's Kubernetes manifests say what the design needs and not more, and agree with the code.

The strings that must match between the YAML and Python (taint key, label prefix, finalizer, mount root)
are compared here, so renaming one side cannot silently open or close a node. That the API server accepts
the manifests and enforces the policy is proven in ``tests/integration/test_agent_admission.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker.api import constants as c

MANIFESTS = Path(__file__).resolve().parents[2] / "daemonset" / "manifests"
Json = dict[str, Any]


def docs(name: str) -> list[Json]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def one(name: str, kind: str) -> Json:
    (found,) = [d for d in docs(name) if d["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def pod() -> Json:
    spec: Json = one("daemonset.yaml", "DaemonSet")["spec"]["template"]["spec"]
    return spec


def test_the_daemonset_runs_on_gpu_nodes_before_they_are_opened(pod: Json) -> None:
    tolerations = {(t["key"], t["operator"], t["effect"]) for t in pod["tolerations"]}
    assert (c.STARTUP_TAINT_KEY, "Exists", c.STARTUP_TAINT_EFFECT) in tolerations
    assert (c.GPU_RESOURCE, "Exists", "NoSchedule") in tolerations
    assert pod["priorityClassName"] == "system-node-critical"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]}
    ]
    assert pod["serviceAccountName"] == one("rbac.yaml", "ServiceAccount")["metadata"]["name"]


def test_the_container_gets_its_node_name_and_shares_only_the_mount_root(pod: Json) -> None:
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["mount-root"]["hostPath"]["path"] == c.MOUNT_ROOT == args["mount-root"]
    assert mounts["mount-root"]["mountPath"] == args["host-root"] + c.MOUNT_ROOT
    assert mounts["mount-root"]["mountPropagation"] == "Bidirectional"
    assert volumes["dev"]["hostPath"]["path"] == "/dev" == mounts["dev"]["mountPath"] == args["dev-root"]
    assert {v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v} == {"/dev", c.MOUNT_ROOT}
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Prefetched pages are charged to this container: a memory limit would evict them.
    assert "memory" not in container["resources"].get("limits", {})
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_rbac_is_the_least_the_agent_needs() -> None:
    rules = [
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"]))
        for r in one("rbac.yaml", "ClusterRole")["rules"]
    ]
    assert rules == [
        ((c.GROUP,), (c.RUNTIMEDISK_PLURAL,), ("get", "list", "watch", "patch")),
        ((c.GROUP,), (f"{c.RUNTIMEDISK_PLURAL}/status",), ("update",)),
        (("",), ("nodes",), ("get", "patch")),
    ]
    events = one("rbac.yaml", "Role")
    assert events["metadata"]["namespace"] == "default"
    assert events["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]


def test_every_policy_is_bound_to_deny_and_fails_closed() -> None:
    policies = {
        d["metadata"]["name"]: d for d in docs("admission-policy.yaml") if d["kind"].endswith("Policy")
    }
    bindings = [d for d in docs("admission-policy.yaml") if d["kind"].endswith("PolicyBinding")]
    assert len(policies) == 2
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(policies)
    for binding in bindings:
        assert binding["spec"]["validationActions"] == ["Deny"]
    for policy in policies.values():
        assert policy["spec"]["failurePolicy"] == "Fail"
        for validation in policy["spec"]["validations"]:
            assert validation["reason"] == "Forbidden"


@pytest.mark.parametrize(
    "needle",
    [
        c.STARTUP_TAINT_KEY,
        c.RUNTIME_READY_LABEL_PREFIX,
        c.FINALIZER_UNMOUNT,
        f"'{c.RUNTIME_READY_VALUE}'",
        "authentication.kubernetes.io/node-name",
        "system:serviceaccount:sdworker-system:sdworker-agent",
    ],
)
def test_the_policy_speaks_the_same_vocabulary_as_the_code(needle: str) -> None:
    assert needle in (MANIFESTS / "admission-policy.yaml").read_text()
