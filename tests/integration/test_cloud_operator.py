"""The operator with its GCE provider against the compute API simulator: real HTTP, real loop devices.

Each kwok node has a simulator instance of the same name (as a GKE node has its VM); a test that
removes a node deletes the instance too, as the cluster-autoscaler does on scale-in.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.api_core.exceptions as gexc
import pytest
from google.cloud import compute_v1
from kubernetes import client

from sdworker.api import naming
from sdworker_images import build
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, FaultRule, SimConfig, client_kwargs
from sdworker_tools.computesim.testing import make_ext4_image, publish_build, wait_operation
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.image_support import build_example
from tests.unit.invalid_specs import valid_sdworker

GROUP, VERSION = "sdworker.dev", "v1alpha1"
PROJECT = "sdworker-test"
ZONE = "us-central1-a"
IMAGE = f"projects/{PROJECT}/global/images/family/sd-runtime"
WRITE_QUOTA = 5.0
WRITE_BURST = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    return build_example(tmp_path_factory.mktemp("runtime-build") / "out")


@pytest.fixture(scope="module")
def sim(built: build.BuildResult) -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="fast", write_quota_per_s=WRITE_QUOTA, seed=7)) as s:
        publish_build(s, built.out, project=PROJECT, family="sd-runtime", name="sd-runtime-v1")
        yield s


@pytest.fixture(scope="module")
def cloud_operator(
    cluster: LocalCluster, crds: list[str], sim: ComputeSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster,
        tmp_path_factory.mktemp("cloud-operator-logs"),
        extra_args=[
            "--cloud=gce",
            f"--compute-endpoint={sim.endpoint}",
            "--anonymous-credentials",
            "--cluster-name=it",
            f"--write-quota={WRITE_QUOTA}",
            f"--write-burst={WRITE_BURST}",
            "--sweep-seconds=3",
            "--resync-seconds=10",
        ],
    )
    op.start()
    yield op
    op.stop()


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def add_node(
    cluster: LocalCluster, sim: ComputeSim, name: str, labels: dict[str, str], zone: str = ZONE
) -> None:
    sim.create_instance(name, zone=zone, project=PROJECT)
    cluster.add_gpu_node(name, zone=zone, project=PROJECT, labels=labels, wait_ready=False)


def remove_node(core: client.CoreV1Api, sim: ComputeSim, name: str, zone: str = ZONE) -> None:
    """Scale-in: the VM goes (taking its autoDelete disks), then its Node object."""
    instances = compute_v1.InstancesClient(**client_kwargs(sim.endpoint))
    ops = compute_v1.ZoneOperationsClient(**client_kwargs(sim.endpoint))

    def delete() -> bool:
        try:
            op = instances.delete_unary(project=PROJECT, zone=zone, instance=name)
        except gexc.Forbidden:  # the shared write quota; the autoscaler backs off too
            return False
        wait_operation(ops, op, project=PROJECT, zone=zone)
        return True

    wait_for(delete, timeout=60, what=f"deleting VM {name}", interval=0.5)
    core.delete_node(name)


def sdworker(
    api: client.ApiClient, namespace: str, name: str, selector: dict[str, str], **runtime: Any
) -> None:
    body = valid_sdworker(name, namespace)
    body["spec"]["nodeSelector"] = selector
    body["spec"]["runtime"]["image"] = IMAGE
    body["spec"]["runtime"].update(runtime)
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", body)


def scale_in(
    api: client.ApiClient, core: client.CoreV1Api, sim: ComputeSim, nodes: list[str], *, zone: str = ZONE
) -> None:
    """Remove ``nodes`` (VMs, then Node objects) and wait until all their RuntimeDisks are released."""
    for node in nodes:
        remove_node(core, sim, node, zone=zone)

    def released() -> bool:
        items = custom(api).list_cluster_custom_object(GROUP, VERSION, "runtimedisks")["items"]
        return not any(i["spec"]["nodeName"] in nodes for i in items)

    wait_for(released, timeout=120, what=f"the RuntimeDisks of {len(nodes)} removed nodes to be released")


def runtimedisks(api: client.ApiClient, prefix: str) -> dict[str, dict[str, Any]]:
    items = custom(api).list_cluster_custom_object(GROUP, VERSION, "runtimedisks")["items"]
    return {i["metadata"]["name"]: i for i in items if i["spec"]["nodeName"].startswith(prefix)}


def phases(api: client.ApiClient, prefix: str) -> collections.Counter[str]:
    return collections.Counter(
        (d.get("status") or {}).get("phase", "") for d in runtimedisks(api, prefix).values()
    )


def sim_disks(sim: ComputeSim, **labels: str) -> list[dict[str, Any]]:
    disks = sim.inventory()["disks"]
    return [d for d in disks if all(d.get("labels", {}).get(k) == v for k, v in labels.items())]


def pool_disks(sim: ComputeSim, cluster: str, zone: str) -> list[dict[str, Any]]:
    """The warm-pool disks of ``cluster`` in ``zone``, as the simulator holds them."""
    return [
        d
        for d in sim_disks(sim, **{"sdworker-cluster": cluster})
        if d["labels"].get("sdworker-pool") and d["zone"].endswith(zone)
    ]


def all_attached(api: client.ApiClient, prefix: str, count: int) -> bool:
    return phases(api, prefix) == collections.Counter({"Attached": count})


def by_id(sim: ComputeSim, node: str, device: str) -> Path:
    return sim.dev_root(node) / "disk" / "by-id" / f"google-{device}"


pytestmark = pytest.mark.usefixtures("cloud_operator")


def test_ten_nodes_get_disks_attached_and_five_leave(
    cluster: LocalCluster,
    sim: ComputeSim,
    built: build.BuildResult,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
) -> None:
    prefix = f"ten-{unique}"[:30]
    selector = {"test-pool": unique}
    sdworker(api, namespace, "ten", selector)
    for i in range(10):
        add_node(cluster, sim, f"{prefix}-{i}", selector)
    wait_for(
        lambda: all_attached(api, prefix, 10),
        timeout=120,
        what="10 RuntimeDisks Attached",
        describe=lambda: phases(api, prefix),
    )
    disks = runtimedisks(api, prefix)
    for rd in disks.values():
        spec, status = rd["spec"], rd["status"]
        assert spec["imageDigest"] == built.digest
        assert spec["image"] == f"projects/{PROJECT}/global/images/sd-runtime-v1"
        device = by_id(sim, spec["nodeName"], spec["deviceName"])
        assert device.is_symlink()
        assert device.resolve().name.startswith("loop")
        assert Path(device.resolve()).is_block_device()
        assert {"nodeCreated", "diskCreated", "attached"} <= set(status["timings"]), json.dumps(rd)
    ours = sim_disks(sim, **{"sdworker-cluster": "it"})
    assert sorted(d["name"] for d in ours if d["name"].startswith("sdw-")) == sorted(
        d["spec"]["diskName"] for d in disks.values()
    )

    gone = [f"{prefix}-{i}" for i in range(5)]
    gone_disks = {rd["spec"]["diskName"] for rd in disks.values() if rd["spec"]["nodeName"] in gone}
    for node in gone:
        remove_node(core, sim, node)
    wait_for(
        lambda: len(runtimedisks(api, prefix)) == 5,
        timeout=60,
        what="the removed nodes' RuntimeDisks to be released",
        describe=lambda: sorted(runtimedisks(api, prefix)),
    )
    left = {d["name"] for d in sim.inventory()["disks"]}
    assert not gone_disks & left
    scale_in(api, core, sim, [f"{prefix}-{i}" for i in range(5, 10)])


def test_operator_killed_mid_provisioning_leaks_nothing(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
    cloud_operator: OperatorProcess,
) -> None:
    prefix = f"kill-{unique}"[:30]
    selector = {"test-pool": unique}
    # Slow attaches, and every mutation's first answer lost after it acted (the client sees a 503
    # and must retry with the same requestId).
    sim.configure(latency_overrides={"instances.attachDisk": 1.5})
    sim.add_faults(FaultRule("disks.insert", kind="lost_response", count=2))
    try:
        sdworker(api, namespace, "kill", selector)
        for i in range(4):
            add_node(cluster, sim, f"{prefix}-{i}", selector)
        wait_for(
            lambda: phases(api, prefix)["Attaching"] >= 1,
            timeout=60,
            what="a RuntimeDisk between create and attach",
            describe=lambda: phases(api, prefix),
        )
        cloud_operator.kill()
        cloud_operator.start()
        wait_for(
            lambda: all_attached(api, prefix, 4),
            timeout=120,
            what="all 4 Attached after the restart",
            describe=lambda: phases(api, prefix),
        )
    finally:
        sim.configure(latency_overrides={})
        sim.clear_faults()
    names = [rd["spec"]["diskName"] for rd in runtimedisks(api, prefix).values()]
    inventory = collections.Counter(d["name"] for d in sim.inventory()["disks"])
    assert all(inventory[n] == 1 for n in names)
    ours = sim_disks(sim, **{"sdworker-cluster": "it"})
    per_node = collections.Counter(d["labels"].get("sdworker-node") for d in ours)
    assert all(per_node[f"{prefix}-{i}"] == 1 for i in range(4)), per_node
    scale_in(api, core, sim, [f"{prefix}-{i}" for i in range(4)])


def test_thirty_nodes_under_failures_and_write_quota(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
) -> None:
    prefix = f"q-{unique}"[:30]
    selector = {"test-pool": unique}
    since = len(sim.requests())
    sim.configure(http_error_rate=0.1, operation_error_rate=0.1)
    try:
        sdworker(api, namespace, "quota", selector)
        for i in range(30):
            add_node(cluster, sim, f"{prefix}-{i:02d}", selector)
        wait_for(
            lambda: all_attached(api, prefix, 30),
            timeout=300,
            what="30 RuntimeDisks Attached despite 10% failures",
            describe=lambda: phases(api, prefix),
        )
    finally:
        sim.configure(http_error_rate=0.0, operation_error_rate=0.0)
    writes = [r for r in sim.requests(since) if r.get("write")]
    assert writes, "the simulator saw no writes"
    stamps = sorted(float(r["t"]) for r in writes)
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    rejected = [r for r in writes if r.get("status") == 403 and r.get("reason") == "rateLimitExceeded"]
    print(f"\n[quota] {len(stamps)} writes, at most {worst} arriving in any 1 s window")
    print(f"[quota] quota {WRITE_QUOTA}/s, operator burst {WRITE_BURST}; rejected by quota: {len(rejected)}")
    # The quota as the cloud enforces it (a token bucket of one second's worth) never had to refuse a
    # write: the operator's own bucket kept it under. Arrival windows can bunch by transport jitter.
    assert rejected == []
    # Failures were surfaced as Events with the error table's reasons.
    events = core.list_namespaced_event("default", field_selector="involvedObject.kind=RuntimeDisk").items
    reasons = {e.reason for e in events if e.involved_object.name.startswith(prefix)}
    assert reasons & {"CloudUnavailable", "CloudBusy", "ZoneResourcesExhausted", "OperationFailed"}, reasons
    scale_in(api, core, sim, [f"{prefix}-{i:02d}" for i in range(30)])


def test_warm_pool_claim_skips_disk_creation_and_refills(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
) -> None:
    prefix = f"wp-{unique}"[:30]
    selector = {"test-pool": unique}
    zone = "us-central1-b"
    sdworker(api, namespace, "pooled", selector, warmPool={"size": 3})
    add_node(cluster, sim, f"{prefix}-0", selector, zone=zone)

    def pool() -> list[dict[str, Any]]:
        return pool_disks(sim, "it", zone)

    wait_for(lambda: len(pool()) == 3, timeout=60, what="the warm pool to fill to 3", describe=pool)
    wait_for(lambda: all_attached(api, prefix, 1), timeout=60, what="the first node Attached")
    pool_names = {d["name"] for d in pool()}
    since = len(sim.operations())
    add_node(cluster, sim, f"{prefix}-1", selector, zone=zone)
    wait_for(lambda: all_attached(api, prefix, 2), timeout=60, what="the second node Attached")
    rd = next(d for d in runtimedisks(api, prefix).values() if d["spec"]["nodeName"] == f"{prefix}-1")
    claimed = rd["spec"]["diskName"]
    assert claimed in pool_names
    ops = sim.operations(since)
    assert not [
        o for o in ops if o["operationType"] == "insert" and o["targetLink"].endswith(f"/disks/{claimed}")
    ]
    assert [
        o for o in ops if o["operationType"] == "attachDisk" and f"/instances/{prefix}-1" in o["targetLink"]
    ]
    wait_for(
        lambda: len(pool()) == 3 and claimed not in {d["name"] for d in pool()},
        timeout=60,
        what="the pool to refill",
    )
    scale_in(api, core, sim, [f"{prefix}-{i}" for i in range(2)], zone=zone)
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", "pooled")


@pytest.mark.parametrize(
    ("disk_type", "access_mode"),
    [
        # Persistent Disk is shared read-only as it is: it has no access mode.
        ("pd-balanced", None),
        # Hyperdisk ML only once created READ_ONLY_MANY: the simulator refuses a READ_WRITE_SINGLE
        # one's second attach as GCE does, so this passes only because the operator sets the mode.
        ("hyperdisk-ml", "READ_ONLY_MANY"),
    ],
)
def test_shared_read_only_one_disk_per_zone(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
    disk_type: str,
    access_mode: str | None,
) -> None:
    prefix = f"sh-{unique}"[:30]
    selector = {"test-pool": unique}
    zone = "us-central1-c"
    sdworker(api, namespace, "shared", selector, mode="SharedReadOnly", diskType=disk_type)
    for i in range(5):
        add_node(cluster, sim, f"{prefix}-{i}", selector, zone=zone)
    wait_for(
        lambda: all_attached(api, prefix, 5),
        timeout=90,
        what="5 nodes Attached",
        describe=lambda: phases(api, prefix),
    )
    names = {rd["spec"]["diskName"] for rd in runtimedisks(api, prefix).values()}
    assert len(names) == 1
    (disk,) = [d for d in sim.inventory()["disks"] if d["name"] in names]
    assert len(disk["users"]) == 5
    assert disk["type"].endswith(f"/diskTypes/{disk_type}")
    assert disk.get("accessMode") == access_mode
    inventory = sim.inventory()
    modes = [
        a["mode"]
        for inst in inventory["instances"]
        if inst["name"].startswith(prefix)
        for a in inst.get("disks", [])
        if a["source"].endswith(f"/disks/{disk['name']}")
    ]
    assert modes == ["READ_ONLY"] * 5
    scale_in(api, core, sim, [f"{prefix}-{i}" for i in range(5)], zone=zone)
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", "shared")
    # The shared disk outlives its nodes until the sweeper sees it unused and unclaimed.
    wait_for(
        lambda: disk["name"] not in {d["name"] for d in sim.inventory()["disks"]},
        timeout=60,
        what="sweep of the shared disk",
        describe=lambda: [d for d in sim.inventory()["disks"] if d["name"] == disk["name"]],
    )


def test_fatal_errors_fail_clearly_without_a_retry_storm(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
    tmp_path: Path,
) -> None:
    # 1. An image that does not exist: the SDWorker says so; lookups are cached, not hammered.
    prefix = f"fx-{unique}"[:30]
    selector = {"test-pool": unique}
    since = len(sim.requests())
    body = valid_sdworker("missing", namespace)
    body["spec"]["nodeSelector"] = selector
    body["spec"]["runtime"]["image"] = f"projects/{PROJECT}/global/images/no-such-image"
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", body)
    add_node(cluster, sim, f"{prefix}-0", selector)

    def degraded() -> dict[str, Any] | None:
        obj = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", "missing")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return conds.get("Degraded") if conds.get("Degraded", {}).get("status") == "True" else None

    cond = wait_for(degraded, timeout=30, what="Degraded for the missing image")
    assert cond["reason"] == "ImageNotFound"
    assert "no-such-image" in cond["message"]
    assert not runtimedisks(api, prefix)
    lookups = [r for r in sim.requests(since) if "no-such-image" in r.get("path", "")]
    assert 1 <= len(lookups) <= 3, lookups

    # 2. A disk name already taken by a disk from another image: Failed with both images named.
    sim.register_image("other-image", make_ext4_image(tmp_path / "other.ext4", {"x": "y"}), project=PROJECT)
    rid = naming.runtime_id(f"projects/{PROJECT}/global/images/sd-runtime-v1")
    node = f"{prefix}-1"
    taken = naming.disk_name(node, rid)
    disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))
    op = disks.insert_unary(
        project=PROJECT,
        zone=ZONE,
        disk_resource=compute_v1.Disk(
            name=taken, source_image=f"projects/{PROJECT}/global/images/other-image"
        ),
    )
    wait_operation(
        compute_v1.ZoneOperationsClient(**client_kwargs(sim.endpoint)), op, project=PROJECT, zone=ZONE
    )
    ops_since = len(sim.operations())
    sdworker(api, namespace, "conflict", {"test-pool": f"{unique}-c"})
    add_node(cluster, sim, node, {"test-pool": f"{unique}-c"})

    def failed() -> dict[str, Any] | None:
        rds = runtimedisks(api, node)
        rd = next(iter(rds.values()), None)
        return rd if rd and (rd.get("status") or {}).get("phase") == "Failed" else None

    rd = wait_for(
        failed, timeout=30, what="Failed for the conflicting disk", describe=lambda: runtimedisks(api, node)
    )
    assert rd["status"]["reason"] == "DiskConflict"
    assert "other-image" in rd["status"]["message"]
    ops = sim.operations(ops_since)
    inserts = [o for o in ops if o["operationType"] == "insert" and o["targetLink"].endswith(taken)]
    assert inserts == []
    scale_in(api, core, sim, [f"{prefix}-0", node])


def test_hyperdisk_without_read_only_many_fails_the_second_attach_visibly(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
) -> None:
    """What GCE does to a shared Hyperdisk ML created without its access mode (as the operator used to):
    the first node attaches, the second is refused, and the cloud's reason shows on its RuntimeDisk."""
    prefix = f"hm-{unique}"[:30]
    selector = {"test-pool": unique}
    zone = "us-east1-b"
    rid = naming.runtime_id(f"projects/{PROJECT}/global/images/sd-runtime-v1")
    name = naming.shared_disk_name(zone, rid, cluster="it")
    disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))
    ops = compute_v1.ZoneOperationsClient(**client_kwargs(sim.endpoint))
    # The shared disk, already there without accessMode (and without our labels, so no sweep takes it).
    op = disks.insert_unary(
        project=PROJECT,
        zone=zone,
        disk_resource=compute_v1.Disk(
            name=name,
            source_image=f"projects/{PROJECT}/global/images/sd-runtime-v1",
            type_=f"zones/{zone}/diskTypes/hyperdisk-ml",
        ),
    )
    wait_operation(ops, op, project=PROJECT, zone=zone)
    sdworker(api, namespace, "unshared", selector, mode="SharedReadOnly", diskType="hyperdisk-ml")
    nodes = [f"{prefix}-{i}" for i in range(2)]
    for node in nodes:
        add_node(cluster, sim, node, selector, zone=zone)

    def one_attached_one_refused() -> dict[str, dict[str, Any]] | None:
        by_reason = {
            str((rd.get("status") or {}).get("reason")): rd for rd in runtimedisks(api, prefix).values()
        }
        return by_reason if {"Attached", "ResourceInUse"} <= set(by_reason) else None

    found = wait_for(
        one_attached_one_refused,
        timeout=60,
        what="one node Attached and the other refused with ResourceInUse",
        describe=lambda: {n: rd.get("status") for n, rd in runtimedisks(api, prefix).items()},
    )
    refused = found["ResourceInUse"]
    assert refused["status"]["phase"] == "Attaching"
    assert "is already being used by" in refused["status"]["message"]
    events = core.list_namespaced_event("default", field_selector="involvedObject.kind=RuntimeDisk").items
    assert "ResourceInUse" in {
        e.reason for e in events if e.involved_object.name == refused["metadata"]["name"]
    }
    (disk,) = [d for d in sim.inventory()["disks"] if d["name"] == name]
    assert disk["accessMode"] == "READ_WRITE_SINGLE"
    assert len(disk["users"]) == 1
    scale_in(api, core, sim, nodes, zone=zone)
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", "unshared")

    def deleted() -> bool:
        try:
            wait_operation(
                ops, disks.delete_unary(project=PROJECT, zone=zone, disk=name), project=PROJECT, zone=zone
            )
        except gexc.NotFound:
            return True
        except (gexc.Forbidden, gexc.BadRequest):  # write quota; still detaching
            return False
        return True

    wait_for(deleted, timeout=60, what=f"deleting {name}", interval=0.5)


def test_sweeper_finds_a_leak_in_a_zone_never_seen_since_start(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    unique: str,
    cloud_operator: OperatorProcess,
) -> None:
    """Regression: the sweeper only listed zones seen since start-up, so a disk leaked in a zone whose
    nodes had all gone before a restart stayed forever."""
    zone = "europe-west4-b"
    disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))
    ops = compute_v1.ZoneOperationsClient(**client_kwargs(sim.endpoint))
    leaked, foreign = f"sdw-leak-{unique}"[:63], f"sdw-foreign-{unique}"[:63]
    for name, cluster_label in ((leaked, "it"), (foreign, "another-cluster")):
        op = disks.insert_unary(
            project=PROJECT,
            zone=zone,
            disk_resource=compute_v1.Disk(
                name=name,
                source_image=f"projects/{PROJECT}/global/images/sd-runtime-v1",
                labels={"sdworker-managed": "true", "sdworker-cluster": cluster_label},
            ),
        )
        wait_operation(ops, op, project=PROJECT, zone=zone)
    # A fresh operator, whose only node is in another zone: it has never seen europe-west4-b.
    cloud_operator.kill()
    cloud_operator.start()
    node = f"sw-{unique}"[:30]
    add_node(cluster, sim, node, {"test-pool": f"{unique}-none"})

    def names() -> set[str]:
        return {d["name"] for d in sim.inventory()["disks"]}

    wait_for(
        lambda: leaked not in names(), timeout=60, what=f"the sweep of {leaked} in {zone}", describe=names
    )
    assert foreign in names(), "a disk of another cluster was swept"
    wait_operation(
        ops, disks.delete_unary(project=PROJECT, zone=zone, disk=foreign), project=PROJECT, zone=zone
    )
    remove_node(core, sim, node)
