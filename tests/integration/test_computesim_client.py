"""The simulator driven by the real google-cloud-compute client over HTTP, with real loop devices.

Every call here is what the operator's cloud layer will make: ``*_unary`` mutations with a
``requestId``, then ``ZoneOperationsClient.wait``. Disks are backed by sparse copies of an ext4
image built with ``mkfs.ext4 -d`` and show up as ``/dev/loopN`` behind by-id symlinks that a test
can ``blkid`` and mount.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from sdworker_tools import procs
from sdworker_tools.computesim import ComputeSim, FaultRule, SimConfig, client_kwargs
from sdworker_tools.computesim.blockdev import backing_file
from sdworker_tools.computesim.testing import loop_devices_usable, make_ext4_image, wait_operation

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not loop_devices_usable(), reason="needs root and /dev/loop-control (losetup, mount)"),
]

PROJECT = "sim-project"
ZONE = "us-central1-a"
MODEL = "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors"
MODEL_BYTES = b"not really a checkpoint\n" * 64
MANIFEST = '{"digest": "sha256:feed"}\n'


@dataclass
class Clients:
    images: Any
    disks: Any
    instances: Any
    zone_ops: Any
    global_ops: Any
    zones: Any

    def wait(self, op: Any, zone: str | None = ZONE) -> Any:
        if zone is None:
            return wait_operation(self.global_ops, op, project=PROJECT)
        return wait_operation(self.zone_ops, op, project=PROJECT, zone=zone)


@pytest.fixture(scope="module")
def runtime_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("computesim-image") / "runtime.ext4"
    return make_ext4_image(
        path, {MODEL: MODEL_BYTES, ".sdworker/manifest.json": MANIFEST}, label="sd-runtime"
    )


@pytest.fixture
def sim() -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="fast", seed=1)) as s:
        yield s


@pytest.fixture
def clients(sim: ComputeSim) -> Clients:
    kw = client_kwargs(sim.endpoint)
    return Clients(
        images=compute_v1.ImagesClient(**kw),
        disks=compute_v1.DisksClient(**kw),
        instances=compute_v1.InstancesClient(**kw),
        zone_ops=compute_v1.ZoneOperationsClient(**kw),
        global_ops=compute_v1.GlobalOperationsClient(**kw),
        zones=compute_v1.ZonesClient(**kw),
    )


def insert_disk(
    clients: Clients,
    name: str,
    *,
    image: str = f"projects/{PROJECT}/global/images/family/sd-runtime",
    size_gb: int = 1,
    labels: dict[str, str] | None = None,
    zone: str = ZONE,
    request_id: str | None = None,
) -> Any:
    return clients.disks.insert_unary(
        request=compute_v1.InsertDiskRequest(
            project=PROJECT,
            zone=zone,
            request_id=request_id or str(uuid.uuid4()),
            disk_resource=compute_v1.Disk(
                name=name,
                size_gb=size_gb,
                source_image=image,
                type_=f"zones/{zone}/diskTypes/pd-balanced",
                labels=labels or {},
            ),
        )
    )


def attach(
    clients: Clients,
    instance: str,
    disk: str,
    device: str,
    *,
    mode: str = "READ_WRITE",
    auto_delete: bool = False,
) -> Any:
    return clients.instances.attach_disk_unary(
        request=compute_v1.AttachDiskInstanceRequest(
            project=PROJECT,
            zone=ZONE,
            instance=instance,
            request_id=str(uuid.uuid4()),
            attached_disk_resource=compute_v1.AttachedDisk(
                source=f"projects/{PROJECT}/zones/{ZONE}/disks/{disk}",
                device_name=device,
                mode=mode,
                auto_delete=auto_delete,
            ),
        )
    )


def ready_disk(clients: Clients, sim: ComputeSim, name: str, **kwargs: Any) -> Any:
    op = clients.wait(insert_disk(clients, name, **kwargs))
    assert not op.error.errors, op.error
    return clients.disks.get(project=PROJECT, zone=ZONE, disk=name)


@pytest.fixture
def with_image(sim: ComputeSim, runtime_image: Path, tmp_path: Path) -> ComputeSim:
    sim.register_image("sd-runtime-v1", runtime_image, project=PROJECT, family="sd-runtime")
    big = tmp_path / "big.raw"
    with big.open("wb") as f:
        f.truncate(3 * 1024**3)  # sparse: a 3 GB image costs nothing
    sim.register_image("big", big, project=PROJECT)
    for node in ("gpu-node-a", "gpu-node-b", "gpu-node-c"):
        sim.create_instance(node, zone=ZONE, project=PROJECT)
    return sim


@contextlib.contextmanager
def mounted(device: Path, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    procs.run(["mount", "-t", "ext4", "-o", "ro,noload", str(device), str(where)])
    try:
        yield where
    finally:
        procs.run(["umount", str(where)])


def test_image_family_disk_attach_mount_detach_delete(
    sim: ComputeSim, clients: Clients, runtime_image: Path, tmp_path: Path
) -> None:
    # images.insert, the image publisher's path, from a local file; a newer image wins the family.
    for name in ("sd-runtime-v1", "sd-runtime-v2"):
        op = clients.images.insert_unary(
            project=PROJECT,
            image_resource=compute_v1.Image(
                name=name,
                family="sd-runtime",
                labels={"purpose": "computesim-test"},
                raw_disk=compute_v1.RawDisk(source=f"file://{runtime_image}"),
            ),
        )
        assert clients.wait(op, zone=None).error.errors == []
    newest = clients.images.get_from_family(project=PROJECT, family="sd-runtime")
    assert newest.name == "sd-runtime-v2"
    assert newest.archive_size_bytes == runtime_image.stat().st_size
    assert newest.disk_size_gb == 1
    deprecate = clients.images.deprecate_unary(
        project=PROJECT,
        image="sd-runtime-v2",
        deprecation_status_resource=compute_v1.DeprecationStatus(state="DEPRECATED"),
    )
    clients.wait(deprecate, zone=None)
    assert clients.images.get_from_family(project=PROJECT, family="sd-runtime").name == "sd-runtime-v1"

    sim.create_instance("gpu-node-1", zone=ZONE, project=PROJECT)
    op = insert_disk(
        clients, "sdw-node1-v1", labels={"sdworker-managed": "true", "sdworker-node": "gpu-node-1"}
    )
    assert op.status == compute_v1.Operation.Status.PENDING
    assert clients.disks.get(project=PROJECT, zone=ZONE, disk="sdw-node1-v1").status == "CREATING"
    done = clients.wait(op)
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.error.errors == []
    assert done.operation_type == "insert"
    assert done.target_link.endswith(f"/projects/{PROJECT}/zones/{ZONE}/disks/sdw-node1-v1")
    disk = clients.disks.get(project=PROJECT, zone=ZONE, disk="sdw-node1-v1")
    assert disk.status == "READY"
    assert disk.source_image.endswith(f"/projects/{PROJECT}/global/images/sd-runtime-v1")
    assert int(disk.source_image_id) == clients.images.get(project=PROJECT, image="sd-runtime-v1").id
    assert disk.type_.endswith(f"/zones/{ZONE}/diskTypes/pd-balanced")

    done = clients.wait(attach(clients, "gpu-node-1", "sdw-node1-v1", "sdworker-runtime", mode="READ_ONLY"))
    assert done.error.errors == []
    by_id = sim.dev_root("gpu-node-1") / "disk" / "by-id" / "google-sdworker-runtime"
    loop = os.readlink(by_id)
    assert loop.startswith("/dev/loop")
    assert stat.S_ISBLK(os.stat(by_id).st_mode)
    assert (
        sim.dev_root("gpu-node-1") / "disk/by-id/scsi-0Google_PersistentDisk_sdworker-runtime"
    ).is_symlink()
    assert procs.run(["blockdev", "--getro", loop]).stdout.strip() == "1"
    # The device is the whole disk (sizeGb), the filesystem the image's.
    assert int(procs.run(["blockdev", "--getsize64", loop]).stdout) == 1024**3
    blkid = procs.run(["blkid", "-o", "export", str(by_id)]).stdout
    assert "TYPE=ext4" in blkid
    assert "LABEL=sd-runtime" in blkid
    with mounted(by_id, tmp_path / "mnt") as mnt:
        assert (mnt / MODEL).read_bytes() == MODEL_BYTES
        assert (mnt / ".sdworker/manifest.json").read_text() == MANIFEST

    instance = clients.instances.get(project=PROJECT, zone=ZONE, instance="gpu-node-1")
    (attached,) = instance.disks
    assert (attached.device_name, attached.mode, attached.source) == (
        "sdworker-runtime",
        "READ_ONLY",
        disk.self_link,
    )
    assert clients.disks.get(project=PROJECT, zone=ZONE, disk="sdw-node1-v1").users == [instance.self_link]

    detach = clients.instances.detach_disk_unary(
        project=PROJECT, zone=ZONE, instance="gpu-node-1", device_name="sdworker-runtime"
    )
    assert clients.wait(detach).error.errors == []
    assert not by_id.is_symlink()
    assert not str(backing_file(loop) or "").startswith(str(sim.state_dir))  # the loop device is released
    assert clients.disks.get(project=PROJECT, zone=ZONE, disk="sdw-node1-v1").users == []

    backing = Path(sim.inventory()["disks"][0]["_sim"]["file"])
    assert backing.exists()
    delete = clients.disks.delete_unary(project=PROJECT, zone=ZONE, disk="sdw-node1-v1")
    assert clients.wait(delete).error.errors == []
    assert not backing.exists()
    with pytest.raises(gexc.NotFound):
        clients.disks.get(project=PROJECT, zone=ZONE, disk="sdw-node1-v1")


def test_images_insert_takes_a_gce_import_archive(
    sim: ComputeSim, clients: Clients, runtime_image: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "disk.raw"
    procs.run(["cp", "--sparse=always", str(runtime_image), str(raw)])
    archive = tmp_path / "sd-runtime.tar.gz"
    # What the image publisher produces: oldgnu, sparse, a single disk.raw.
    procs.run(["tar", "--format=oldgnu", "-Sczf", str(archive), "-C", str(tmp_path), "disk.raw"])
    op = clients.images.insert_unary(
        project=PROJECT,
        image_resource=compute_v1.Image(
            name="from-archive", raw_disk=compute_v1.RawDisk(source=str(archive))
        ),
    )
    assert clients.wait(op, zone=None).error.errors == []
    image = clients.images.get(project=PROJECT, image="from-archive")
    assert image.archive_size_bytes == archive.stat().st_size
    assert image.raw_disk.source == str(archive)
    stored = Path(sim.inventory()["images"][0]["_sim"]["file"])
    assert "TYPE=ext4" in procs.run(["blkid", "-o", "export", str(stored)]).stdout
    with tarfile.open(archive) as tf:
        assert tf.getnames() == ["disk.raw"]


def test_list_filters_and_pages_as_the_client_sends_them(with_image: ComputeSim, clients: Clients) -> None:
    for i in range(5):
        insert_disk(
            clients, f"sdw-{i}", labels={"sdworker-managed": "true", "sdworker-node": f"gpu-node-{i % 2}"}
        )
    insert_disk(clients, "someone-elses")
    # Listed at once, while CREATING, as in GCE.
    request = compute_v1.ListDisksRequest(
        project=PROJECT,
        zone=ZONE,
        filter='labels.sdworker-managed = "true" AND labels.sdworker-node = "gpu-node-0"',
    )
    assert sorted(d.name for d in clients.disks.list(request=request)) == ["sdw-0", "sdw-2", "sdw-4"]
    by_name = compute_v1.ListDisksRequest(project=PROJECT, zone=ZONE, filter='name = "someone-elses"')
    assert [d.name for d in clients.disks.list(request=by_name)] == ["someone-elses"]
    paged = compute_v1.ListDisksRequest(project=PROJECT, zone=ZONE, max_results=2)
    pager = clients.disks.list(request=paged)
    assert len(list(pager)) == 6  # the pager followed nextPageToken
    with pytest.raises(gexc.BadRequest):
        list(
            clients.disks.list(
                request=compute_v1.ListDisksRequest(project=PROJECT, zone=ZONE, filter='name = "unterminated')
            )
        )


def test_stale_label_fingerprint_is_412(with_image: ComputeSim, clients: Clients) -> None:
    disk = ready_disk(clients, with_image, "pool-disk-1", labels={"sdworker-pool": "runtime-v1"})
    seen_by_replica_a = seen_by_replica_b = disk.label_fingerprint

    def claim(fingerprint: str, node: str) -> Any:
        return clients.disks.set_labels_unary(
            project=PROJECT,
            zone=ZONE,
            resource="pool-disk-1",
            zone_set_labels_request_resource=compute_v1.ZoneSetLabelsRequest(
                labels={"sdworker-pool": "runtime-v1", "sdworker-node": node}, label_fingerprint=fingerprint
            ),
        )

    assert clients.wait(claim(seen_by_replica_a, "gpu-node-a")).error.errors == []
    with pytest.raises(gexc.PreconditionFailed) as exc:
        claim(seen_by_replica_b, "gpu-node-b")
    assert exc.value.code == 412
    assert exc.value.errors[0]["reason"] == "conditionNotMet"
    after = clients.disks.get(project=PROJECT, zone=ZONE, disk="pool-disk-1")
    assert after.labels["sdworker-node"] == "gpu-node-a"
    assert after.label_fingerprint != seen_by_replica_a


def test_write_burst_over_the_regional_quota_gets_403(with_image: ComputeSim, clients: Clients) -> None:
    with_image.configure(write_quota_per_s=5, write_quota_burst=5)
    outcomes: list[str] = []
    refusals: list[gexc.Forbidden] = []
    for i in range(15):
        try:
            insert_disk(clients, f"burst-{i}")
            outcomes.append("ok")
        except gexc.Forbidden as exc:
            refusals.append(exc)
            outcomes.append("403")
    assert refusals
    assert all(exc.errors[0]["reason"] == "rateLimitExceeded" for exc in refusals)
    assert all("Quota exceeded" in exc.message for exc in refusals)
    assert outcomes[:5] == ["ok"] * 5
    assert "403" in outcomes
    writes = [r for r in with_image.requests() if r["method"] == "disks.insert"]
    assert [r["status"] for r in writes].count(403) == outcomes.count("403")
    # Other regions have their own bucket.
    other = insert_disk(clients, "elsewhere", zone="europe-west4-a")
    assert other.name


def test_too_many_pending_operations_on_one_resource(with_image: ComputeSim, clients: Clients) -> None:
    ready_disk(clients, with_image, "busy-disk")
    with_image.configure(pending_ops_per_resource=2, latency_overrides={"disks.setLabels": 2.0})
    fingerprint = clients.disks.get(project=PROJECT, zone=ZONE, disk="busy-disk").label_fingerprint
    for i in range(2):
        op = clients.disks.set_labels_unary(
            project=PROJECT,
            zone=ZONE,
            resource="busy-disk",
            zone_set_labels_request_resource=compute_v1.ZoneSetLabelsRequest(
                labels={"n": str(i)}, label_fingerprint=fingerprint
            ),
        )
        assert op.status in (compute_v1.Operation.Status.PENDING, compute_v1.Operation.Status.RUNNING)
        fingerprint = clients.disks.get(project=PROJECT, zone=ZONE, disk="busy-disk").label_fingerprint
    with pytest.raises(gexc.Forbidden) as exc:
        clients.disks.set_labels_unary(
            project=PROJECT,
            zone=ZONE,
            resource="busy-disk",
            zone_set_labels_request_resource=compute_v1.ZoneSetLabelsRequest(
                labels={"n": "2"}, label_fingerprint=fingerprint
            ),
        )
    assert exc.value.message.endswith(": Too many pending operations on a resource.")
    assert exc.value.errors[0]["reason"] == "rateLimitExceeded"
    # Another disk is not affected.
    assert insert_disk(clients, "idle-disk").name


def test_injected_operation_errors_and_5xx(with_image: ComputeSim, clients: Clients) -> None:
    with_image.add_faults(
        FaultRule(method="disks.insert", kind="operation", code="ZONE_RESOURCE_POOL_EXHAUSTED")
    )
    failed = clients.wait(insert_disk(clients, "unlucky"))
    assert failed.status == compute_v1.Operation.Status.DONE
    assert failed.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert failed.http_error_status_code == 503
    with pytest.raises(gexc.NotFound):  # the failed insert left no disk behind
        clients.disks.get(project=PROJECT, zone=ZONE, disk="unlucky")
    ready_disk(clients, with_image, "lucky")  # the rule fired once

    with_image.configure(operation_error_rate=1.0, operation_error_codes=["RESOURCE_NOT_READY"])
    failed = clients.wait(attach(clients, "gpu-node-a", "lucky", "sdw"))
    assert failed.error.errors[0].code == "RESOURCE_NOT_READY"
    assert not (with_image.dev_root("gpu-node-a") / "disk/by-id/google-sdw").exists()
    assert clients.instances.get(project=PROJECT, zone=ZONE, instance="gpu-node-a").disks == []
    with_image.configure(operation_error_rate=0.0)

    with_image.add_faults(FaultRule(method="instances.attachDisk", kind="http", http_status=503))
    with pytest.raises(gexc.ServiceUnavailable) as exc:
        attach(clients, "gpu-node-a", "lucky", "sdw")
    assert exc.value.errors[0]["reason"] == "backendError"
    assert clients.instances.get(project=PROJECT, zone=ZONE, instance="gpu-node-a").disks == []
    assert clients.wait(attach(clients, "gpu-node-a", "lucky", "sdw")).error.errors == []


def test_lost_response_retried_with_the_same_request_id_acts_once(
    with_image: ComputeSim, clients: Clients
) -> None:
    with_image.add_faults(FaultRule(method="disks.insert", kind="lost_response"))
    request_id = str(uuid.uuid4())
    with pytest.raises(gexc.ServiceUnavailable):
        insert_disk(clients, "retried", request_id=request_id)
    op = insert_disk(clients, "retried", request_id=request_id)
    assert clients.wait(op).error.errors == []
    inserts = [o for o in with_image.operations() if o["_sim"]["method"] == "disks.insert"]
    assert [o["name"] for o in inserts] == [op.name]
    assert op.client_operation_id == request_id
    # Without the requestId the retry would have been refused as a duplicate.
    with pytest.raises(gexc.Conflict):
        insert_disk(clients, "retried")


def test_read_only_multi_attach_and_read_write_exclusivity(with_image: ComputeSim, clients: Clients) -> None:
    ready_disk(clients, with_image, "shared")
    for node in ("gpu-node-a", "gpu-node-b"):
        assert clients.wait(attach(clients, node, "shared", "runtime", mode="READ_ONLY")).error.errors == []
    loops = {
        os.readlink(with_image.dev_root(n) / "disk/by-id/google-runtime")
        for n in ("gpu-node-a", "gpu-node-b")
    }
    assert len(loops) == 2  # one block device per VM
    with pytest.raises(gexc.BadRequest) as exc:
        attach(clients, "gpu-node-c", "shared", "runtime", mode="READ_WRITE")
    assert exc.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    assert "is already being used by" in exc.value.message

    ready_disk(clients, with_image, "exclusive")
    assert clients.wait(attach(clients, "gpu-node-c", "exclusive", "scratch")).error.errors == []
    for mode in ("READ_WRITE", "READ_ONLY"):
        with pytest.raises(gexc.BadRequest) as exc:
            attach(clients, "gpu-node-a", "exclusive", "scratch", mode=mode)
        assert exc.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    with pytest.raises(gexc.BadRequest) as exc:
        clients.disks.delete_unary(project=PROJECT, zone=ZONE, disk="exclusive")
    assert exc.value.errors[0]["reason"] == "resourceInUseByAnotherResource"


def test_instance_delete_takes_its_auto_delete_disks(with_image: ComputeSim, clients: Clients) -> None:
    ready_disk(clients, with_image, "per-node")
    ready_disk(clients, with_image, "keeper")
    clients.wait(attach(clients, "gpu-node-a", "per-node", "runtime", auto_delete=True))
    clients.wait(attach(clients, "gpu-node-a", "keeper", "keep", auto_delete=True))
    flip = clients.instances.set_disk_auto_delete_unary(
        project=PROJECT, zone=ZONE, instance="gpu-node-a", auto_delete=False, device_name="keep"
    )
    clients.wait(flip)
    files = {d["name"]: Path(d["_sim"]["file"]) for d in with_image.inventory()["disks"]}
    loops = with_image.inventory()["loopDevices"]
    assert len(loops) == 2
    clients.wait(clients.instances.delete_unary(project=PROJECT, zone=ZONE, instance="gpu-node-a"))
    with pytest.raises(gexc.NotFound):
        clients.instances.get(project=PROJECT, zone=ZONE, instance="gpu-node-a")
    with pytest.raises(gexc.NotFound):
        clients.disks.get(project=PROJECT, zone=ZONE, disk="per-node")
    assert not files["per-node"].exists()
    assert clients.disks.get(project=PROJECT, zone=ZONE, disk="keeper").users == []
    assert files["keeper"].exists()
    assert with_image.inventory()["loopDevices"] == []
    assert not (with_image.dev_root("gpu-node-a") / "disk" / "by-id").exists()


def test_wait_blocks_until_done_and_first_disk_in_zone_is_slower(
    with_image: ComputeSim, clients: Clients
) -> None:
    with_image.configure(latency_overrides={"disks.insert": 0.5})
    started = time.monotonic()
    op = insert_disk(clients, "first-in-zone")
    assert clients.zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name).status != (
        compute_v1.Operation.Status.DONE
    )
    done = clients.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name)  # one call, no polling
    first = time.monotonic() - started
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.progress == 100
    assert done.start_time
    assert done.end_time
    started = time.monotonic()
    clients.wait(insert_disk(clients, "second-in-zone"))
    second = time.monotonic() - started
    latencies = {o["targetLink"].rsplit("/", 1)[1]: o["_sim"]["latencyS"] for o in with_image.operations()}
    # fast profile: +150 ms for the first disk of an image in a zone (jitter is +-25 % of the sum)
    assert latencies["first-in-zone"] > latencies["second-in-zone"]
    assert first > 0.4
    assert second > 0.3
    assert "sim-project/sd-runtime-v1@us-central1-a" in with_image.inventory()["warmImageZones"]

    with_image.configure(operation_wait_timeout_s=0.2, latency_overrides={"disks.insert": 3.0})
    op = insert_disk(clients, "slow")
    early = clients.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert early.status != compute_v1.Operation.Status.DONE  # wait returns at its deadline


def test_invalid_requests_get_the_real_errors(with_image: ComputeSim, clients: Clients) -> None:
    with pytest.raises(gexc.BadRequest, match="cannot be smaller than the image size"):
        insert_disk(clients, "too-small", size_gb=2, image=f"projects/{PROJECT}/global/images/big")
    with pytest.raises(gexc.NotFound, match="global/images/nope"):
        insert_disk(clients, "no-image", image=f"projects/{PROJECT}/global/images/nope")
    with pytest.raises(gexc.BadRequest, match=r"resource\.name"):
        insert_disk(clients, "Upper_Case")
    with pytest.raises(gexc.BadRequest, match="Unknown zone"):
        insert_disk(clients, "nowhere", zone="mars-north1-a")
    with pytest.raises(gexc.BadRequest):
        clients.instances.detach_disk_unary(
            project=PROJECT, zone=ZONE, instance="gpu-node-a", device_name="none"
        )
    assert ZONE in [z.name for z in clients.zones.list(project=PROJECT)]
    zone = clients.zones.get(project=PROJECT, zone=ZONE)
    assert zone.status == "UP"
    assert zone.region.endswith("/regions/us-central1")


def test_concurrent_copies_of_one_request_act_once(with_image: ComputeSim, clients: Clients) -> None:
    request_id = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=8) as pool:
        ops = list(pool.map(lambda _: insert_disk(clients, "raced", request_id=request_id), range(8)))
    assert len({op.name for op in ops}) == 1
    assert len([o for o in with_image.operations() if o["_sim"]["method"] == "disks.insert"]) == 1


def test_many_nodes_provision_in_parallel(with_image: ComputeSim, clients: Clients) -> None:
    with_image.configure(
        write_quota_per_s=None
    )  # 32 writes in well under a second; the quota is tested above
    nodes = [f"burst-node-{i}" for i in range(8)]

    def provision(node: str) -> str:
        op = clients.instances.insert_unary(
            project=PROJECT,
            zone=ZONE,
            instance_resource=compute_v1.Instance(
                name=node, machine_type=f"zones/{ZONE}/machineTypes/g2-standard-8"
            ),
        )
        assert clients.wait(op).error.errors == []
        assert clients.wait(insert_disk(clients, f"sdw-{node}")).error.errors == []
        assert (
            clients.wait(
                attach(clients, node, f"sdw-{node}", "sdworker-runtime", auto_delete=True)
            ).error.errors
            == []
        )
        return os.readlink(with_image.dev_root(node) / "disk/by-id/google-sdworker-runtime")

    with ThreadPoolExecutor(max_workers=8) as pool:
        loops = list(pool.map(provision, nodes))
    assert len(set(loops)) == len(nodes)
    instance = clients.instances.get(project=PROJECT, zone=ZONE, instance=nodes[0])
    assert instance.status == "RUNNING"
    assert instance.machine_type.endswith("/machineTypes/g2-standard-8")
    assert with_image.inventory()["pendingOperations"] == {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        deletes = list(
            pool.map(lambda n: clients.instances.delete_unary(project=PROJECT, zone=ZONE, instance=n), nodes)
        )
    for op in deletes:
        assert clients.wait(op).error.errors == []
    assert with_image.inventory()["loopDevices"] == []
    assert [d["name"] for d in with_image.inventory()["disks"]] == []
