"""The operator's and the node agent's /metrics endpoints, scraped after a node's runtime came up.

One kwok GPU node with its simulator VM, the operator (GCE provider against the simulator, a warm pool of
one) and the node's agent (its production identity: a token bound to its pod). Once the RuntimeDisk is
Ready, both endpoints are scraped and every documented metric family must be there; the ones the flow
exercised must carry values.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from sdworker.api import constants as c
from sdworker.metrics import Metrics
from sdworker_agent.metrics import Metrics as AgentMetrics
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import publish_build
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.test_agent_support import (
    MODEL,
    SIM_PROJECT,
    ZONE,
    Harness,
    build_runtime_image,
)
from tests.unit.invalid_specs import valid_sdworker

# The operator's documented metrics (README table), as exposed (counters carry _total).
OPERATOR_METRICS = {
    "sdworker_phase_duration_seconds": "histogram",
    "sdworker_node_ready_seconds": "histogram",
    "sdworker_cloud_calls": "counter",
    "sdworker_cloud_call_duration_seconds": "histogram",
    "sdworker_cloud_write_wait_seconds": "counter",
    "sdworker_warm_pool_disks": "gauge",
    "sdworker_orphans_deleted": "counter",
    "sdworker_reconcile_errors": "counter",
    "sdworker_runtimedisks": "gauge",
    "sdworker_leader": "gauge",
}


def families(text: str) -> dict[str, tuple[str, dict[str, float]]]:
    out = {}
    for fam in text_string_to_metric_families(text):
        values = {}
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        out[fam.name] = (fam.type, values)
    return out


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def documented_agent_metrics() -> dict[str, str]:
    """Every family the agent's ``Metrics`` defines, read from the module itself."""
    return {fam.name: fam.type for fam in AgentMetrics().registry.collect()}


def test_documented_operator_metrics_match_the_module() -> None:
    assert {fam.name: fam.type for fam in Metrics().registry.collect()} == OPERATOR_METRICS


@pytest.fixture
def world(
    cluster: LocalCluster,
    api: client.ApiClient,
    crds: list[str],
    namespace: str,
    tmp_path: Path,
) -> Iterator[tuple[Harness, OperatorProcess, int]]:
    port = free_port()
    with ComputeSim(SimConfig(latency="fast")) as sim:
        h = Harness(cluster, api, sim, namespace, f"m{uuid.uuid4().hex[:6]}", tmp_path)
        op = OperatorProcess(
            cluster,
            tmp_path,
            extra_args=[
                "--cloud=gce",
                f"--compute-endpoint={sim.endpoint}",
                "--anonymous-credentials",
                f"--cluster-name={h.suffix}",
                f"--metrics-address=127.0.0.1:{port}",
                "--sweep-seconds=2",
            ],
        )
        try:
            op.start()
            yield h, op, port
        finally:
            op.stop()
            h.close()


def test_operator_and_agent_endpoints_export_every_documented_metric(
    world: tuple[Harness, OperatorProcess, int], api: client.ApiClient, unique: str
) -> None:
    h, op, port = world
    image = build_runtime_image(h.workdir, f"rt-{h.suffix}", model_bytes=1 << 20, pack=True)
    publish_build(
        h.simulator, image.path.parent, project=SIM_PROJECT, family=f"fam-{h.suffix}", name=image.name
    )
    node = h.add_node(f"{unique}-m"[:40])
    body = valid_sdworker("metrics", h.namespace)
    body["spec"]["nodeSelector"] = {"sdworker.test/harness": h.suffix}
    body["spec"]["runtime"].update(
        image=f"projects/{SIM_PROJECT}/global/images/family/fam-{h.suffix}",
        diskSizeGb=10,
        warmPool={"size": 1},
        prefetch=[MODEL],
    )
    h.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, h.namespace, c.SDWORKER_PLURAL, body)
    h.install(["rbac.yaml", "admission-policy.yaml"])
    agent = h.start_agent(node, h.agent_credentials(node))

    def ready() -> bool:
        items = h.custom.list_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, label_selector=f"{c.LABEL_NODE}={node}"
        )["items"]
        h.runtimedisks[:] = [i["metadata"]["name"] for i in items]
        return bool(items) and all((i.get("status") or {}).get("phase") == "Ready" for i in items)

    wait_for(
        ready, timeout=90, what="the node's RuntimeDisk Ready", describe=lambda: h.describe() + op.log_tail()
    )

    def operator_saw_ready() -> dict[str, tuple[str, dict[str, float]]] | None:
        fams = families(scrape(port))
        count = fams["sdworker_node_ready_seconds"][1].get("sdworker_node_ready_seconds_count", 0)
        pool = fams["sdworker_warm_pool_disks"][1]
        return fams if count >= 1 and pool else None

    fams = wait_for(
        operator_saw_ready, timeout=30, what="the operator to observe Ready", describe=op.log_tail
    )
    for name, kind in OPERATOR_METRICS.items():
        assert name in fams, f"{name} missing from the operator's /metrics"
        assert fams[name][0] == kind, name
    values = {k: v for _, vals in fams.values() for k, v in vals.items()}
    assert values['sdworker_phase_duration_seconds_count{phase="create"}'] >= 1
    assert values['sdworker_phase_duration_seconds_count{phase="attach"}'] >= 1
    assert values['sdworker_cloud_calls_total{method="disks.insert",outcome="ok"}'] >= 1
    assert values['sdworker_runtimedisks{phase="Ready"}'] >= 1
    assert values[f'sdworker_warm_pool_disks{{runtime="{image.runtime_id}",zone="{ZONE}"}}'] == 1
    assert "sdworker_cloud_write_wait_seconds_total" in values
    assert "sdworker_orphans_deleted_total" in values

    agent_fams = families(agent.http("/metrics")[1])
    for name, kind in documented_agent_metrics().items():
        assert name in agent_fams, f"{name} missing from the agent's /metrics"
        assert agent_fams[name][0] == kind, name
    assert agent.metric("sdworker_agent_mount_seconds_count") == 1

    # The same world through `sdworker status` (the CLI reads what the operator and agent wrote).
    argv = [sys.executable, "-m", "sdworker", "status", f"--kubeconfig={h.cluster.kubeconfig}"]
    model = json.loads(procs.run([*argv, "-n", h.namespace, "-o", "json"], timeout=60).stdout)
    (worker,) = model["sdworkers"]
    assert (worker["namespace"], worker["name"]) == (h.namespace, "metrics")
    assert worker["runtime"]["runtimeId"] == image.runtime_id
    (disk,) = [t for t in model["runtimeDisks"] if t["node"] == node]
    assert disk["phase"] == "Ready"
    assert disk["readySeconds"] is not None
    assert set(disk["durationsSeconds"]) == {"createDisk", "attach", "fsck", "mount", "verify", "prefetch"}
    text = procs.run([*argv, "-n", h.namespace], timeout=60).stdout
    row = next(line for line in text.splitlines() if line.split()[:1] == [node])
    assert row.split()[1] == "Ready"
    assert f"{h.namespace}/metrics" in text
