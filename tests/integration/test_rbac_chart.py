"""Least privilege, proven against the real API server with each identity the chart creates.

The chart is installed once for the module (``helm install`` into a fresh namespace). Each identity acts
with its own token from the TokenRequest API: the operator's ServiceAccount, the agent's ServiceAccount
(bound to the agent's real DaemonSet pod, which is how the kubelet issues it and how the API server learns
the node), and the ServiceAccount SD pods run as (the namespace's ``default``: the operator renders SD pods
with ``automountServiceAccountToken: false`` and the chart grants it nothing). Each check is a
``SelfSubjectAccessReview`` asked with that token, and the important ones are also real requests that
must come back 403.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from sdworker.api import constants as c
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.test_chart_support import (
    CHART,
    REPO,
    TEST_ACCELERATOR,
    Access,
    Helm,
    Json,
    allowed,
    api_for,
    sa_token,
    status_of,
)

EXAMPLE = REPO / "examples" / "sdworker.yaml"


@dataclass(frozen=True)
class Install:
    release: str
    namespace: str
    user_namespace: str
    own_node: str
    other_node: str
    workdir: Path

    @property
    def operator_sa(self) -> str:
        return f"{self.release}-sdworker-operator"

    @property
    def agent_sa(self) -> str:
        return f"{self.release}-sdworker-agent"


@pytest.fixture(scope="module")
def install(
    cluster: LocalCluster, crds: list[str], core: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    workdir = tmp_path_factory.mktemp("rbac")
    suffix = workdir.name[-6:].strip("-_").lower() or "x"
    inst = Install(
        release=f"rbac{suffix}",
        namespace=f"rbac-sys-{suffix}",
        user_namespace=f"rbac-user-{suffix}",
        own_node=f"rbac-own-{suffix}",
        other_node=f"rbac-other-{suffix}",
        workdir=workdir,
    )
    for ns in (inst.namespace, inst.user_namespace):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        wait_for(
            functools.partial(core.read_namespaced_service_account, "default", ns),
            timeout=30,
            what=f"ServiceAccount default in {ns}",
        )
    # An accelerator no other test selects: no session SDWorker claims these nodes for its runtimes.
    cluster.add_gpu_node(
        inst.own_node, accelerator=TEST_ACCELERATOR, labels={"sdworker.dev/test-agent": inst.release}
    )
    cluster.add_gpu_node(inst.other_node, accelerator=TEST_ACCELERATOR)
    helm = Helm(workdir / "helm", kubeconfig=cluster.kubeconfig)
    helm.run(
        "install",
        inst.release,
        str(CHART),
        f"--namespace={inst.namespace}",
        "--wait",
        "--timeout=120s",
        "--set=operator.cloud=none",
        "--set=agent.gpuNodeLabel=sdworker.dev/test-agent",
    )
    try:
        yield inst
    finally:
        helm.run(
            "uninstall",
            inst.release,
            f"--namespace={inst.namespace}",
            "--wait",
            "--timeout=120s",
            check=False,
        )
        for node in (inst.own_node, inst.other_node):
            core.delete_node(node)
        for ns in (inst.namespace, inst.user_namespace):
            core.delete_namespace(ns)


def _as(cluster: LocalCluster, inst: Install, name: str, token: str) -> Iterator[client.ApiClient]:
    with api_for(cluster, inst.workdir, name, token) as api:
        yield api


@pytest.fixture(scope="module")
def operator_api(
    cluster: LocalCluster, core: client.CoreV1Api, install: Install
) -> Iterator[client.ApiClient]:
    yield from _as(cluster, install, "operator", sa_token(core, install.namespace, install.operator_sa))


@pytest.fixture(scope="module")
def agent_api(cluster: LocalCluster, core: client.CoreV1Api, install: Install) -> Iterator[client.ApiClient]:
    selector = f"app.kubernetes.io/instance={install.release},app.kubernetes.io/component=node-agent"
    pods = wait_for(
        lambda: [
            p
            for p in core.list_namespaced_pod(install.namespace, label_selector=selector).items
            if p.spec.node_name == install.own_node
        ],
        timeout=60,
        what=f"the agent pod on {install.own_node}",
    )
    pod = {"name": pods[0].metadata.name, "uid": pods[0].metadata.uid}
    yield from _as(cluster, install, "agent", sa_token(core, install.namespace, install.agent_sa, pod=pod))


@pytest.fixture(scope="module")
def sd_pod_api(cluster: LocalCluster, core: client.CoreV1Api, install: Install) -> Iterator[client.ApiClient]:
    yield from _as(cluster, install, "sd-pod", sa_token(core, install.user_namespace, "default"))


def _denied(api: client.ApiClient, checks: list[Access]) -> list[str]:
    return [str(a) for a in checks if allowed(api, a)]


def _refused(api: client.ApiClient, checks: list[Access]) -> list[str]:
    return [str(a) for a in checks if not allowed(api, a)]


def _secrets(ns: str) -> list[Access]:
    return [
        Access(v, "secrets", namespace=n) for v in ("get", "list", "watch") for n in (ns, "default", None)
    ]


# --- the operator ----------------------------------------------------------------------------------


def test_operator_can_do_what_it_must(
    cluster: LocalCluster, operator_api: client.ApiClient, install: Install
) -> None:
    g, ns = c.GROUP, install.user_namespace
    must = [
        *(Access(v, "sdworkers", g) for v in ("list", "watch")),
        Access("patch", "sdworkers", g, namespace=ns, subresource="status"),
        *(Access(v, "runtimedisks", g) for v in ("list", "watch", "create", "delete", "patch")),
        Access("update", "runtimedisks", g, subresource="status"),
        *(Access(v, "nodes") for v in ("get", "list", "watch")),
        # Pods are read to retire a runtime only once no pod on its node uses it (issue 14).
        *(Access(v, "pods") for v in ("get", "list", "watch")),
        # Karpenter's NodeClaims: disks before nodes (operator/sdworker/domain/preprovision.py).
        *(Access(v, "nodeclaims", "karpenter.sh") for v in ("get", "list", "watch")),
        *(Access(v, "deployments", "apps") for v in ("list", "watch")),
        *(Access(v, "deployments", "apps", namespace=ns) for v in ("create", "patch")),
        *(Access(v, "services", namespace=ns) for v in ("create", "patch")),
        *(Access(v, "poddisruptionbudgets", "policy", namespace=ns) for v in ("create", "patch")),
        Access("create", "events", namespace=ns),
        Access("create", "events", namespace="default"),
    ]
    assert _refused(operator_api, must) == []

    core, custom = client.CoreV1Api(operator_api), client.CustomObjectsApi(operator_api)
    assert status_of(lambda: core.list_node()) == 200
    assert status_of(lambda: custom.list_cluster_custom_object(g, c.VERSION, c.SDWORKER_PLURAL)) == 200
    assert status_of(lambda: custom.list_cluster_custom_object(g, c.VERSION, c.RUNTIMEDISK_PLURAL)) == 200
    # Server-side apply of its children, as the operator does it (server dry run: nothing is left behind).
    assert cluster.binaries is not None
    kubeconfig = install.workdir / "operator.kubeconfig"  # written by api_for for this identity
    children = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sd-rbac", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "sd-rbac"}},
                "template": {
                    "metadata": {"labels": {"app": "sd-rbac"}},
                    "spec": {"containers": [{"name": "webui", "image": "sd-base"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "sd-rbac", "namespace": ns},
            "spec": {"selector": {"app": "sd-rbac"}, "ports": [{"port": 7860}]},
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "sd-rbac", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "sd-rbac"}}, "maxUnavailable": 1},
        },
    ]
    result = procs.run(
        [
            str(cluster.binaries.path("kubectl")),
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--field-manager=sdworker",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": children}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied (server dry run)") == 3, result.stdout


def test_operator_cannot_read_secrets_or_escalate(operator_api: client.ApiClient, install: Install) -> None:
    never = [
        *_secrets(install.namespace),
        *_secrets(install.user_namespace),
        Access("create", "pods", namespace=install.user_namespace),
        Access("create", "pods", namespace=install.user_namespace, subresource="exec"),
        Access("patch", "nodes"),
        Access("patch", "nodes", subresource="status"),
        Access("delete", "nodes"),
        # NodeClaims are Karpenter's: the operator only reads them.
        *(Access(v, "nodeclaims", "karpenter.sh") for v in ("create", "patch", "update", "delete")),
        Access("create", "serviceaccounts", namespace=install.user_namespace, subresource="token"),
        Access("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
        Access("escalate", "clusterroles", "rbac.authorization.k8s.io"),
        Access("delete", "sdworkers", c.GROUP, namespace=install.user_namespace),
        Access("delete", "deployments", "apps", namespace=install.user_namespace),
        Access("get", "configmaps", namespace=install.user_namespace),
        # One replica runs standalone: no kopf peering rights (the HA install gets them, for its object only).
        Access("list", "clusterkopfpeerings", "kopf.dev"),
    ]
    assert _denied(operator_api, never) == []
    core = client.CoreV1Api(operator_api)
    assert status_of(lambda: core.list_secret_for_all_namespaces()) == 403
    assert status_of(lambda: core.list_namespaced_secret(install.namespace)) == 403
    assert status_of(lambda: core.list_namespaced_secret(install.user_namespace)) == 403


# --- the agent -------------------------------------------------------------------------------------


def test_agent_cannot_create_runtimedisks_read_secrets_or_touch_other_objects(
    agent_api: client.ApiClient, install: Install
) -> None:
    g = c.GROUP
    never = [
        *_secrets(install.namespace),
        Access("create", "runtimedisks", g),
        Access("delete", "runtimedisks", g),
        Access("list", "sdworkers", g),
        Access("patch", "nodes", subresource="status"),
        Access("create", "nodes"),
        Access("delete", "nodes"),
        Access("list", "pods"),
        Access("create", "events", namespace=install.user_namespace),
        Access("patch", "deployments", "apps", namespace=install.user_namespace),
    ]
    assert _denied(agent_api, never) == []
    must = [
        Access("list", "runtimedisks", g),
        Access("watch", "runtimedisks", g),
        Access("update", "runtimedisks", g, subresource="status"),
        Access("get", "nodes"),
        Access("patch", "nodes"),
        Access("create", "events", namespace="default"),
    ]
    assert _refused(agent_api, must) == []
    core, custom = client.CoreV1Api(agent_api), client.CustomObjectsApi(agent_api)
    assert status_of(lambda: core.list_namespaced_secret(install.namespace)) == 403
    assert status_of(lambda: core.list_secret_for_all_namespaces()) == 403
    disk = {
        "apiVersion": c.API_VERSION,
        "kind": c.RUNTIMEDISK_KIND,
        "metadata": {"name": f"{install.own_node}-x"},
        "spec": {"nodeName": install.own_node},
    }
    assert (
        status_of(lambda: custom.create_cluster_custom_object(g, c.VERSION, c.RUNTIMEDISK_PLURAL, disk))
        == 403
    )


def test_agent_may_label_its_own_node_but_not_patch_another(
    agent_api: client.ApiClient, core: client.CoreV1Api, install: Install
) -> None:
    agent_core = client.CoreV1Api(agent_api)
    label = f"{c.RUNTIME_READY_LABEL_PREFIX}rbac"
    ready = {"metadata": {"labels": {label: "ready"}}}

    def other_refused() -> str | None:
        try:
            agent_core.patch_node(install.other_node, ready)
        except client.ApiException as exc:
            return str(exc.body) if exc.status == 403 else None
        return None  # the policy is not loaded yet: the API server picks it up within moments

    body = wait_for(other_refused, timeout=30, what="the agent's patch of another node refused")
    assert f"may only modify its own Node, not {install.other_node}" in body, body
    agent_core.patch_node(install.own_node, ready)
    assert core.read_node(install.own_node).metadata.labels[label] == "ready"
    # Its own node, but a label it does not own: refused too.
    assert (
        status_of(lambda: agent_core.patch_node(install.own_node, {"metadata": {"labels": {"x": "y"}}}))
        == 403
    )


# --- the SD pods' identity -------------------------------------------------------------------------


def test_sd_pods_service_account_has_no_api_rights(sd_pod_api: client.ApiClient, install: Install) -> None:
    ns = install.user_namespace
    never = [
        *_secrets(ns),
        *(Access(v, "pods", namespace=ns) for v in ("get", "list", "create")),
        Access("list", "nodes"),
        Access("list", "sdworkers", c.GROUP, namespace=ns),
        Access("list", "runtimedisks", c.GROUP),
        Access("list", "configmaps", namespace=ns),
        Access("create", "events", namespace=ns),
        Access("list", "deployments", "apps", namespace=ns),
    ]
    assert _denied(sd_pod_api, never) == []
    core = client.CoreV1Api(sd_pod_api)
    assert status_of(lambda: core.list_namespaced_pod(ns)) == 403
    assert status_of(lambda: core.list_namespaced_secret(ns)) == 403


# --- the operator, running with nothing but the chart's grants --------------------------------------


def test_operator_reconciles_with_only_the_charts_rbac(
    cluster: LocalCluster,
    api: client.ApiClient,
    apps: client.AppsV1Api,
    operator_api: client.ApiClient,
    install: Install,
    tmp_path: Path,
) -> None:
    """The real operator process, authenticated as the chart's ServiceAccount, does its whole job."""
    admin = client.CustomObjectsApi(api)
    ns, name = install.user_namespace, "sd-rbac"
    worker = yaml.safe_load(EXAMPLE.read_text())
    worker["metadata"] = {"name": name, "namespace": ns}
    worker["spec"]["nodeSelector"] = {"cloud.google.com/gke-accelerator": TEST_ACCELERATOR}
    op = OperatorProcess(
        cluster,
        tmp_path,
        extra_args=["--cloud=none", f"--kubeconfig={install.workdir / 'operator.kubeconfig'}"],
    )
    op.start()
    nodes = {install.own_node, install.other_node}

    def disks() -> dict[str, Json]:
        items = admin.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"]
        return {d["spec"]["nodeName"]: d for d in items if d["spec"]["nodeName"] in nodes}

    try:
        admin.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.SDWORKER_PLURAL, worker)
        wait_for(
            lambda: set(disks()) == nodes or None,
            timeout=60,
            what="a RuntimeDisk per matching node",
            describe=op.log_tail,
        )
        for read in (
            apps.read_namespaced_deployment,
            client.CoreV1Api(api).read_namespaced_service,
            client.PolicyV1Api(api).read_namespaced_pod_disruption_budget,
        ):
            wait_for(
                functools.partial(read, name, ns),
                timeout=30,
                what=f"{read.__name__} {name}",
                describe=op.log_tail,
            )
        wait_for(
            lambda: (
                admin.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.SDWORKER_PLURAL, name)
                .get("status", {})
                .get("observedGeneration")
            ),
            timeout=30,
            what="SDWorker status written",
            describe=op.log_tail,
        )
        admin.delete_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.SDWORKER_PLURAL, name)
        # The operator retires a runtime only once no pod on the node uses it (a terminating pod still
        # runs). No kubelet here: kwok leaves SD pods to the pod runner (tools/testcluster/stages/
        # pod-delete.yaml), which this test does not run. As the kubelet does once a terminating pod's
        # containers have stopped (pkg/kubelet/status/status_manager.go: a delete with grace period 0),
        # remove the SD pods the garbage collector has marked for deletion.
        core = client.CoreV1Api(api)

        def sd_pods_gone() -> bool:
            pods = core.list_namespaced_pod(ns, label_selector=f"{c.LABEL_SDWORKER}={name}").items
            for pod in pods:
                if pod.metadata.deletion_timestamp is not None:
                    core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=0)
            return not pods

        wait_for(sd_pods_gone, timeout=180, what="the SD pods deleted", describe=op.log_tail)
        wait_for(
            lambda: not disks(), timeout=180, what="RuntimeDisks deleted and released", describe=op.log_tail
        )
        # RBAC refusals read 'is forbidden: User "system:serviceaccount:..." cannot ...'; other 403s
        # (say, Events into a namespace another test is deleting) are not about the chart's RBAC.
        log = op.log_tail(2000)
        # Without Karpenter, kopf says its NodeClaim index "cannot be served": no CRD, not a refusal.
        denials = [
            line
            for line in log.splitlines()
            if ("is forbidden: User" in line or " cannot " in line)
            and "Unresolved resources cannot be served" not in line
        ]
        assert denials == [], log
    finally:
        op.stop()
        for disk in disks().values():  # only if the operator failed to release them
            admin.patch_cluster_custom_object(
                c.GROUP,
                c.VERSION,
                c.RUNTIMEDISK_PLURAL,
                disk["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
