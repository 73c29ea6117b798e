"""The Helm chart with the real helm CLI: lint, render, schema refusals, and install/uninstall for real.

Rendering tests need only helm; the install test runs against the real local control plane, where kwok
runs the pods (images are never pulled), so "installed" means every object exists, the operator's pod is
scheduled and Running on a kwok node, and the CRDs are served; after ``helm uninstall`` they still are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

import sdworker.__main__ as operator_cli
import sdworker_agent.__main__ as agent_cli
from sdworker.api import constants as c
from sdworker.config import OperatorConfig
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.wait import wait_for
from tests.integration.test_chart_support import CHART, REPO, TEST_ACCELERATOR, Helm, Json, find, kinds

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"))


def test_ci_values_cover_default_ha_and_gke() -> None:
    assert {p.name for p in CI_VALUES} >= {"default-values.yaml", "ha-values.yaml", "gke-values.yaml"}


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "no-values")
def test_helm_lint_strict_passes(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + ([f"--values={values}"] if values else [])
    result = helm.run(*args)
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.name)
def test_every_ci_values_file_renders_objects_in_the_release_namespace(helm: Helm, values: Path) -> None:
    docs = helm.template(values=[values], namespace="sdw-ns")
    assert {("Deployment", "sdworker-operator"), ("DaemonSet", "sdworker-agent")} <= kinds(docs)
    for doc in docs:
        if doc["kind"] in {"Deployment", "DaemonSet", "ServiceAccount", "Service", "ServiceMonitor"}:
            assert doc["metadata"]["namespace"] == "sdw-ns", doc["metadata"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"replica": 2}}, "at '/operator': additional properties 'replica' not allowed"),
        ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
        ({"agent": {"verify": "sometimes"}}, "at '/agent/verify'"),
        (
            {"metrics": {"serviceMonitor": {"enabled": True, "scrape": "1m"}}},
            "additional properties 'scrape'",
        ),
        (
            {"operator": {"serviceAccount": {"gcpServiceAccount": "not-an-email"}}},
            "at '/operator/serviceAccount/gcpServiceAccount'",
        ),
        ({"unknownTopLevel": True}, "additional properties 'unknownTopLevel' not allowed"),
    ],
    ids=["unknown-key", "wrong-type", "bad-enum", "nested-unknown-key", "bad-gcp-sa", "unknown-top-level"],
)
def test_bad_values_are_rejected_with_the_schemas_message(
    helm: Helm, tmp_path: Path, values: Json, message: str
) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    result = helm.run("template", "x", str(CHART), f"--values={bad}", check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def _container(docs: list[Json], kind: str) -> Json:
    container: Json = find(docs, kind)["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.name)
def test_rendered_flags_are_accepted_by_the_operator_and_agent_command_lines(
    helm: Helm, values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = helm.template(values=[values])
    parsed: list[OperatorConfig] = []

    def fake_run(config: OperatorConfig) -> int:
        parsed.append(config)
        return 0

    monkeypatch.setattr(operator_cli, "_run", fake_run)
    # The operator's command line turns the rendered flags into its one validated configuration.
    assert operator_cli.main(_container(docs, "Deployment")["args"]) == 0
    (config,) = parsed
    chart_values = yaml.safe_load(values.read_text()) or {}
    assert config.project == (chart_values.get("operator") or {}).get("project")
    monkeypatch.setenv("NODE_NAME", "gke-node-1")  # the DaemonSet sets it from the downward API
    agent_args = agent_cli.parse_args(_container(docs, "DaemonSet")["args"])
    assert agent_args.mount_root == c.MOUNT_ROOT


def test_one_replica_runs_standalone_and_more_run_kopf_peering(helm: Helm) -> None:
    single = helm.template()
    assert not any(a.startswith("--peering") for a in _container(single, "Deployment")["args"])
    assert find(single, "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert not [d for d in single if d["kind"] == "ClusterKopfPeering"]
    role = find(single, "ClusterRole", "sdworker-operator")
    assert not [r for r in role["rules"] if "kopf.dev" in r["apiGroups"]]

    ha = helm.template(values=[CHART / "ci" / "ha-values.yaml"])
    assert "--peering=sdworker" in _container(ha, "Deployment")["args"]
    # Each replica's kopf peering identity is its pod's name (the Downward API; kopf reads POD_ID).
    assert _container(ha, "Deployment")["env"] == [
        {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    assert "env" not in _container(single, "Deployment")
    assert find(ha, "ClusterKopfPeering")["metadata"]["name"] == "sdworker"
    assert find(ha, "Deployment")["spec"]["replicas"] == 2
    assert find(ha, "ServiceMonitor")
    dashboard = find(ha, "ConfigMap", "sdworker-dashboard")
    assert "sdworker_node_ready_seconds_bucket" in dashboard["data"]["sdworker.json"]


def test_workload_identity_annotation_comes_from_values(helm: Helm) -> None:
    docs = helm.template(values=[CHART / "ci" / "gke-values.yaml"])
    sa = find(docs, "ServiceAccount", "sdworker-operator")
    assert sa["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "sdworker-operator@my-project.iam.gserviceaccount.com"
    }
    assert "annotations" not in find(helm.template(), "ServiceAccount", "sdworker-operator")["metadata"]


def test_operator_role_grants_no_secrets_pod_writes_or_rbac(helm: Helm) -> None:
    for values in CI_VALUES:
        for doc in helm.template(values=[values]):
            if doc["kind"] not in {"ClusterRole", "Role"}:
                continue
            for rule in doc["rules"]:
                assert not {"secrets", "serviceaccounts", "*"} & set(rule["resources"]), (doc, rule)
                if "pods" in rule["resources"]:
                    # Read-only: a runtime is retired only once no pod on its node uses it (issue 14).
                    assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
                    assert {"pods/exec", "pods/attach", "pods/portforward"}.isdisjoint(rule["resources"])
                assert "*" not in rule["verbs"], rule
                assert "*" not in rule["apiGroups"], rule
                assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings"} & set(
                    rule["resources"]
                )


def test_agent_objects_match_daemonset_manifests_with_the_namespace_templated(helm: Helm) -> None:
    """The chart's agent objects are daemonset/manifests with names and namespace templated, nothing else."""
    manifests = REPO / "daemonset" / "manifests"
    source = [
        d
        for f in ("rbac.yaml", "admission-policy.yaml", "daemonset.yaml")
        for d in yaml.safe_load_all((manifests / f).read_text())
        if d
    ]
    rendered = helm.template(release="sdworker", namespace="sdworker-system")
    for doc in source:
        mine = find(rendered, doc["kind"], doc["metadata"]["name"])
        assert mine["metadata"].get("namespace") == doc["metadata"].get("namespace")
        for key in ("rules", "roleRef", "subjects"):
            assert mine.get(key) == doc.get(key), (doc["kind"], doc["metadata"]["name"], key)
        if doc["kind"] != "DaemonSet":  # the pod spec is compared field by field below
            assert mine.get("spec") == doc.get("spec"), (doc["kind"], doc["metadata"]["name"])
    other = helm.template(release="blue", namespace="gpu-ops")
    policy = find(other, "ValidatingAdmissionPolicy", "blue-sdworker-agent-own-node")
    text = yaml.safe_dump(policy)
    assert "sdworker-system" not in text
    assert "'system:serviceaccount:gpu-ops:blue-sdworker-agent'" in text
    assert "'system:serviceaccount:gpu-ops:blue-sdworker-agent-node-'" in text
    binding = find(other, "ClusterRoleBinding", "blue-sdworker-agent")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "blue-sdworker-agent", "namespace": "gpu-ops"}
    ]


def test_agent_pod_spec_matches_the_daemonset_manifest(helm: Helm) -> None:
    source = yaml.safe_load((REPO / "daemonset" / "manifests" / "daemonset.yaml").read_text())
    want: Json = source["spec"]["template"]["spec"]
    got: Json = find(helm.template(), "DaemonSet")["spec"]["template"]["spec"]
    for key in ("automountServiceAccountToken", "priorityClassName", "affinity", "tolerations", "volumes"):
        assert got[key] == want[key], key
    mine, theirs = got["containers"][0], want["containers"][0]
    for key in (
        "securityContext",
        "volumeMounts",
        "env",
        "ports",
        "resources",
        "livenessProbe",
        "readinessProbe",
    ):
        assert mine[key] == theirs[key], key
    assert set(theirs["args"]) <= set(mine["args"])


# --- install into the real control plane -----------------------------------------------------------


@pytest.fixture
def gpu_node(cluster: LocalCluster, core: client.CoreV1Api, unique: str) -> Iterator[str]:
    name = f"chart-{unique}"[:60]
    # An accelerator no other test selects: no session SDWorker claims this node for its runtimes.
    cluster.add_gpu_node(name, accelerator=TEST_ACCELERATOR, labels={"sdworker.dev/test-agent": unique})
    yield name
    core.delete_node(name)


def _running(core: client.CoreV1Api, namespace: str, selector: str, count: int) -> list[client.V1Pod] | None:
    """The pods matching ``selector``, once ``count`` of them are scheduled and Running."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    running = [p for p in pods if p.spec.node_name and p.status.phase == "Running"]
    return running if len(running) >= count else None


def _served(cluster: LocalCluster, crd: str) -> bool:
    out = cluster.kubectl(
        "get", f"crd/{crd}", "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    )
    return out.strip() == "True"


def test_helm_install_creates_everything_and_uninstall_keeps_the_crds(
    cluster: LocalCluster,
    crds: list[str],
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
    gpu_node: str,
    tmp_path: Path,
    unique: str,
) -> None:
    helm = Helm(tmp_path / "helm", kubeconfig=cluster.kubeconfig)
    release = f"r{unique[-5:]}"
    sets = {
        "operator.cloud": "none",
        # Only this test's node gets an agent: the session cluster's other GPU nodes belong to other tests.
        "agent.gpuNodeLabel": "sdworker.dev/test-agent",
        # The HA shape (kopf peering: its CRD from crds/, its ClusterKopfPeering object) and the dashboard;
        # tests/integration/test_rbac_chart.py installs the default single replica.
        "operator.replicas": "2",
        "grafanaDashboard.enabled": "true",
    }
    rendered = helm.template(sets=sets, release=release, namespace=namespace)
    # The session may already have the sdworker CRDs (kubectl apply --server-side): helm skips those.
    helm.run(
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--wait",
        "--timeout=120s",
        *[f"--set={k}={v}" for k, v in sets.items()],
    )
    try:
        for kind, name in kinds(rendered):
            doc = next(d for d in rendered if (d["kind"], d["metadata"]["name"]) == (kind, name))
            where = (
                [f"--namespace={doc['metadata']['namespace']}"] if doc["metadata"].get("namespace") else []
            )
            cluster.kubectl("get", kind.lower(), name, *where, "-o", "name")  # raises if missing
        for crd in (*crds, "clusterkopfpeerings.kopf.dev"):
            assert _served(cluster, crd), crd
        pods = wait_for(
            lambda: _running(
                core,
                namespace,
                f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
                2,
            ),
            timeout=60,
            what="both operator pods scheduled and Running",
        )
        assert f"--peering={release}-sdworker" in pods[0].spec.containers[0].args
        for pod in pods:
            node = core.read_node(pod.spec.node_name)
            assert (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake", node.metadata
        assert cluster.kubectl("get", "clusterkopfpeering", f"{release}-sdworker", "-o", "name").strip()
        agents = wait_for(
            lambda: _running(
                core,
                namespace,
                f"app.kubernetes.io/instance={release},app.kubernetes.io/component=node-agent",
                1,
            ),
            timeout=60,
            what="the agent pod Running on the test node",
        )
        assert [p.spec.node_name for p in agents] == [gpu_node]
    finally:
        helm.run("uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=120s")
    wait_for(
        lambda: (
            not apps.list_namespaced_deployment(namespace).items
            and not apps.list_namespaced_daemon_set(namespace).items
        ),
        timeout=60,
        what="workloads gone after uninstall",
    )
    leftovers = [
        kind
        for kind in ("clusterrole", "clusterrolebinding", "validatingadmissionpolicy")
        if release in cluster.kubectl("get", kind, "-o", "name")
    ]
    assert not leftovers, leftovers
    for crd in (*crds, "clusterkopfpeerings.kopf.dev"):
        assert _served(cluster, crd), f"{crd} removed by helm uninstall"


def test_operator_metrics_can_be_turned_off(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    on = helm.template()
    assert "--metrics-address=0.0.0.0:9090" in _container(on, "Deployment")["args"]
    assert find(on, "Service", "sdworker-operator-metrics")["spec"]["ports"][0]["port"] == 9090
    off = helm.template(sets={"operator.metrics.enabled": "false"})
    assert not [d for d in off if d["metadata"]["name"] == "sdworker-operator-metrics"]
    parsed: list[OperatorConfig] = []

    def fake_run(config: OperatorConfig) -> int:
        parsed.append(config)
        return 0

    monkeypatch.setattr(operator_cli, "_run", fake_run)
    assert operator_cli.main(_container(off, "Deployment")["args"]) == 0
    assert parsed[0].metrics_address == ""  # an empty address serves nothing
