"""The operator's metrics: names per Prometheus conventions, and what each recording method exports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sdworker.cloud.errors import CloudError, Retry
from sdworker.controller import error_reason
from sdworker.kube.client import KubeError
from sdworker.metrics import Metrics
from sdworker_agent.metrics import Metrics as AgentMetrics


def samples(m: Metrics) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_every_metric_is_exported_before_anything_happened() -> None:
    names = {s.split("{")[0] for s in samples(Metrics())}
    for wanted in (
        "sdworker_phase_duration_seconds_count",
        "sdworker_node_ready_seconds_count",
        "sdworker_cloud_write_wait_seconds_total",
        "sdworker_orphans_deleted_total",
        "sdworker_runtimedisks",
    ):
        assert wanted in names, sorted(names)


def test_recording_methods() -> None:
    m = Metrics()
    m.phase_done("create", 2.0)
    m.phase_done("attach", 0.5)
    m.cloud_call("disks.insert", "ok", 0.1)
    m.cloud_call("disks.insert", "CloudRateLimited", 0.2)
    waited = [1.5]
    m.write_wait_from(lambda: waited[0])
    m.orphans(2)
    m.reconcile_error("CloudBusy")
    m.warm_pool({("us-central1-a", "rt1"): 3})
    m.runtimedisk_phases(["Ready", "Ready", "Attaching"])
    now = datetime.now(UTC)
    m.runtimedisk_ready("uid-1", now, now + timedelta(seconds=12))
    m.runtimedisk_ready("uid-1", now, now + timedelta(seconds=99))  # once per disk
    m.runtimedisk_ready("uid-old", now - timedelta(hours=1), now - timedelta(minutes=59))  # before start
    s = samples(m)
    assert s['sdworker_phase_duration_seconds_count{phase="create"}'] == 1
    assert s['sdworker_phase_duration_seconds_sum{phase="create"}'] == 2.0
    assert s['sdworker_cloud_calls_total{method="disks.insert",outcome="CloudRateLimited"}'] == 1
    assert s['sdworker_cloud_call_duration_seconds_count{method="disks.insert"}'] == 2
    assert s["sdworker_cloud_write_wait_seconds_total"] == 1.5
    assert s["sdworker_orphans_deleted_total"] == 2
    assert s['sdworker_reconcile_errors_total{reason="CloudBusy"}'] == 1
    assert s['sdworker_warm_pool_disks{runtime="rt1",zone="us-central1-a"}'] == 3
    assert s['sdworker_runtimedisks{phase="Ready"}'] == 2
    assert s['sdworker_runtimedisks{phase="Failed"}'] == 0
    assert s["sdworker_node_ready_seconds_count"] == 1
    assert s["sdworker_node_ready_seconds_sum"] == 12
    m.retain_ready([])  # uid-1 is gone: a new disk with that uid would be observed again
    m.runtimedisk_ready("uid-1", now, now + timedelta(seconds=3))
    assert samples(m)["sdworker_node_ready_seconds_count"] == 2
    m.warm_pool({})
    assert not any(k.startswith("sdworker_warm_pool_disks{") for k in samples(m))


def test_error_reasons() -> None:
    assert error_reason(CloudError("CloudBusy", Retry.SOON, "x")) == "CloudBusy"
    assert error_reason(KubeError(409, "Conflict", "x")) == "KubeConflict"
    assert error_reason(ValueError("x")) == "ValueError"


def test_the_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = Path(__file__).resolve().parents[2] / "operator/sdworker/dashboards/sdworker.json"
    exprs = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bsdworker_[a-z_]+", e)}
    exported = {
        s.name
        for registry in (Metrics().registry, AgentMetrics().registry)
        for fam in registry.collect()
        for s in fam.samples
    } | {
        f"{fam.name}{suffix}"
        for registry in (Metrics().registry, AgentMetrics().registry)
        for fam in registry.collect()
        for suffix in ("", "_total", "_bucket", "_sum", "_count")
    }
    assert used
    assert used <= exported, used - exported
