"""Contract: ``GceCloud`` (the operator's cloud layer) against the compute API simulator over HTTP.

No Kubernetes here: each ``CloudProvider`` promise (idempotent mutations, already-done is success,
classified errors) is checked against the simulator's operation log, through the real client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker.cloud.errors import CloudError, Retry
from sdworker.cloud.gce import GceCloud
from sdworker.cloud.provider import AttachRequest, DiskRequest
from sdworker_images import build
from sdworker_tools.computesim import ComputeSim, FaultRule, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image, publish_build
from tests.integration.image_support import build_example

P, Z = "contract-proj", "us-central1-a"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    return build_example(tmp_path_factory.mktemp("contract-build") / "out")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, built: build.BuildResult) -> Iterator[ComputeSim]:
    tmp = tmp_path_factory.mktemp("contract")
    with ComputeSim(SimConfig(latency="fast", seed=3)) as s:
        publish_build(s, built.out, project=P, family="rt", name="rt-v1")
        # Not published by sdworker: an image without its metadata (any other image in the project).
        s.register_image("rt-other", make_ext4_image(tmp / "o.ext4", {"b": "2"}), project=P)
        s.create_instance("vm-1", zone=Z, project=P)
        s.create_instance("vm-2", zone=Z, project=P)
        yield s


def run(coro_fn: object) -> None:
    asyncio.run(coro_fn)  # type: ignore[arg-type]


def ops(sim: ComputeSim, since: int, kind: str, target: str) -> list[object]:
    return [
        o for o in sim.operations(since) if o["operationType"] == kind and o["targetLink"].endswith(target)
    ]


def test_resolve_family_to_image_and_digest(sim: ComputeSim, built: build.BuildResult) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        resolved = await cloud.resolve_image(f"projects/{P}/global/images/family/rt")
        assert (resolved.image, resolved.digest) == (f"projects/{P}/global/images/rt-v1", built.digest)
        with pytest.raises(CloudError) as missing:
            await cloud.resolve_image(f"projects/{P}/global/images/nope")
        assert (missing.value.reason, missing.value.retry) == ("ImageNotFound", Retry.NEVER)
        with pytest.raises(CloudError) as foreign:
            await cloud.resolve_image(f"projects/{P}/global/images/rt-other")
        assert (foreign.value.reason, foreign.value.retry) == ("ImageMetadataInvalid", Retry.NEVER)
        assert f"image projects/{P}/global/images/rt-other: description is empty" in foreign.value.message
        await cloud.close()

    run(main())


def test_disk_lifecycle_is_idempotent(sim: ComputeSim) -> None:
    image = f"projects/{P}/global/images/rt-v1"
    request = DiskRequest(P, Z, "contract-d1", image, "pd-balanced", 10, {"sdworker-managed": "true"})

    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        since = len(sim.operations())
        first = await cloud.ensure_disk(request, idempotency_key="k1")
        again = await cloud.ensure_disk(request, idempotency_key="k1")
        assert first.name == again.name == "contract-d1"
        assert first.status == "READY"
        assert len(ops(sim, since, "insert", "/disks/contract-d1")) == 1

        for _ in range(2):
            await cloud.ensure_attached(
                AttachRequest(
                    P, Z, "vm-1", "contract-d1", device_name="sdw-x", read_only=False, auto_delete=True
                ),
                idempotency_key="k1",
            )
        assert len(ops(sim, since, "attachDisk", "/instances/vm-1")) == 1
        by_id = sim.dev_root("vm-1") / "disk" / "by-id" / "google-sdw-x"
        assert Path(by_id).resolve().is_block_device()

        # The disk is in use: deleting it now is a retryable conflict, not a silent success.
        with pytest.raises(CloudError) as busy:
            await cloud.ensure_deleted(P, Z, "contract-d1", idempotency_key="k1")
        assert busy.value.retryable

        for _ in range(2):
            await cloud.ensure_detached(P, Z, "vm-1", "sdw-x", idempotency_key="k1")
        assert not by_id.exists()
        for _ in range(2):
            await cloud.ensure_deleted(P, Z, "contract-d1", idempotency_key="k1")
        assert await cloud.get_disk(P, Z, "contract-d1") is None
        assert len(ops(sim, since, "delete", "/disks/contract-d1")) == 1
        await cloud.close()

    run(main())


def test_conflicts_and_fingerprints(sim: ComputeSim) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        other = DiskRequest(P, Z, "contract-d2", f"projects/{P}/global/images/rt-other", "pd-balanced", 10)
        await cloud.ensure_disk(other, idempotency_key="k2")
        mine = DiskRequest(P, Z, "contract-d2", f"projects/{P}/global/images/rt-v1", "pd-balanced", 10)
        with pytest.raises(CloudError) as conflict:
            await cloud.ensure_disk(mine, idempotency_key="k2")
        assert conflict.value.reason == "DiskConflict"
        assert "rt-other" in conflict.value.message

        disk = await cloud.get_disk(P, Z, "contract-d2")
        assert disk is not None
        await cloud.set_labels(P, Z, "contract-d2", {"claimed": "yes"}, disk.label_fingerprint)
        with pytest.raises(CloudError) as stale:
            await cloud.set_labels(P, Z, "contract-d2", {"claimed": "again"}, disk.label_fingerprint)
        assert (stale.value.reason, stale.value.retryable) == ("LabelFingerprintMismatch", True)
        listed = await cloud.list_disks(P, Z, {"claimed": "yes"})
        assert [d.name for d in listed] == ["contract-d2"]

        # READ_WRITE is exclusive; device-name clashes are reported, not papered over.
        await cloud.ensure_attached(
            AttachRequest(
                P, Z, "vm-2", "contract-d2", device_name="sdw-y", read_only=False, auto_delete=False
            ),
            idempotency_key="k2",
        )
        with pytest.raises(CloudError) as clash:
            await cloud.ensure_attached(
                AttachRequest(
                    P, Z, "vm-2", "contract-d1x", device_name="sdw-y", read_only=False, auto_delete=False
                ),
                idempotency_key="k2",
            )
        assert clash.value.reason == "DeviceNameInUse"
        await cloud.ensure_detached(P, Z, "vm-2", "sdw-y", idempotency_key="k2")
        await cloud.ensure_deleted(P, Z, "contract-d2", idempotency_key="k2")
        await cloud.close()

    run(main())


def test_failed_operation_then_retry_is_a_new_request(sim: ComputeSim) -> None:
    """GCE replays a failed operation for a repeated requestId; the retry must use a new one."""
    request = DiskRequest(P, Z, "contract-d3", f"projects/{P}/global/images/rt-v1", "pd-balanced", 10)
    sim.add_faults(FaultRule("disks.insert", kind="operation", code="RESOURCE_NOT_READY", count=1))

    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        with pytest.raises(CloudError) as failed:
            await cloud.ensure_disk(request, idempotency_key="k3")
        assert (failed.value.reason, failed.value.retryable) == ("CloudBusy", True)
        disk = await cloud.ensure_disk(request, idempotency_key="k3")
        assert disk.status == "READY"
        await cloud.ensure_deleted(P, Z, "contract-d3", idempotency_key="k3")
        await cloud.close()

    run(main())


def test_lost_answer_is_retried_with_the_same_request_id(sim: ComputeSim) -> None:
    request = DiskRequest(P, Z, "contract-d4", f"projects/{P}/global/images/rt-v1", "pd-balanced", 10)
    sim.add_faults(FaultRule("disks.insert", kind="lost_response", count=1))

    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        since = len(sim.operations())
        with pytest.raises(CloudError) as lost:
            await cloud.ensure_disk(request, idempotency_key="k4")
        assert lost.value.reason == "CloudUnavailable"
        await cloud.ensure_disk(request, idempotency_key="k4")
        assert len(ops(sim, since, "insert", "/disks/contract-d4")) == 1
        await cloud.ensure_deleted(P, Z, "contract-d4", idempotency_key="k4")
        await cloud.close()

    run(main())
