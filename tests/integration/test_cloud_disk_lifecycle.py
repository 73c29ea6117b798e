"""``GceCloud`` against the simulator over HTTP: access modes, reused disk names, the all-zone listing.

Regressions found while making shared Hyperdisks work (issue 16):
- a SharedReadOnly Hyperdisk was created without ``accessMode``, so GCE refused its second attach;
- a disk name used again within GCE's hour of request-id memory (a zone's shared disk recreated after the
  sweeper deleted it; a pool index reused) got the earlier, DONE operation back for its deterministic
  request id: the insert created nothing (the RuntimeDisk stayed ``Creating``) and the delete deleted
  nothing (the sweeper never removed the disk);
- the sweeper listed only zones seen since start-up (its listing here; the operator test is in
  test_cloud_operator.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sdworker.cloud.errors import CloudError, Retry
from sdworker.cloud.gce import GceCloud
from sdworker.cloud.provider import DiskRequest
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image

P, Z = "lifecycle-proj", "us-central1-a"
IMAGE = f"projects/{P}/global/images/rt-v1"
OURS = {"sdworker-managed": "true", "sdworker-cluster": "lc"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComputeSim]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    with ComputeSim(SimConfig(latency="fast", block_devices=False, seed=5)) as s:
        s.register_image("rt-v1", make_ext4_image(tmp / "rt.ext4", {"a": "1"}), project=P)
        yield s


def request(name: str, disk_type: str = "pd-balanced", *, zone: str = Z, shared: bool = False) -> DiskRequest:
    return DiskRequest(P, zone, name, IMAGE, disk_type, 10, labels=OURS, read_only_many=shared)


def inventory(sim: ComputeSim, name: str) -> list[dict[str, object]]:
    return [d for d in sim.inventory()["disks"] if d["name"] == name]


@pytest.mark.parametrize(
    ("disk_type", "shared", "expected"),
    [
        ("hyperdisk-ml", True, "READ_ONLY_MANY"),
        ("hyperdisk-ml", False, "READ_WRITE_SINGLE"),  # GCE's default: per-node disks need no mode
        ("hyperdisk-balanced", False, "READ_WRITE_SINGLE"),
        ("pd-balanced", True, None),  # Persistent Disk has no access mode
        ("pd-ssd", False, None),
    ],
)
def test_disks_are_created_with_the_access_mode_their_use_needs(
    sim: ComputeSim, disk_type: str, shared: bool, expected: str | None
) -> None:
    name = f"am-{disk_type}-{int(shared)}"

    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        await cloud.ensure_disk(request(name, disk_type, shared=shared), idempotency_key=name)
        (disk,) = inventory(sim, name)
        assert disk.get("accessMode") == expected
        await cloud.ensure_deleted(P, Z, name, idempotency_key=f"del/{name}")
        assert inventory(sim, name) == []
        await cloud.close()

    asyncio.run(main())


def test_a_hyperdisk_type_that_cannot_be_shared_read_only_is_refused_before_any_call(sim: ComputeSim) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        with pytest.raises(CloudError) as refused:
            await cloud.ensure_disk(request("am-hb", "hyperdisk-balanced", shared=True), idempotency_key="hb")
        assert (refused.value.reason, refused.value.retry) == ("DiskTypeNotShareable", Retry.NEVER)
        await cloud.close()

    since = len(sim.requests())
    asyncio.run(main())
    assert not [r for r in sim.requests(since) if r["method"] == "disks.insert"]
    assert inventory(sim, "am-hb") == []


def test_a_disk_name_used_again_is_created_and_deleted_again(sim: ComputeSim) -> None:
    """Same name, same idempotency keys (a shared disk's key is its zone and name), within the hour."""
    name = "reused-shared"

    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        for _ in range(2):
            disk = await cloud.ensure_disk(request(name), idempotency_key=f"lc/{Z}/{name}")
            assert disk.status == "READY"
            assert len(inventory(sim, name)) == 1
            await cloud.ensure_deleted(P, Z, name, idempotency_key=f"orphan/{name}")
            assert inventory(sim, name) == []
        await cloud.close()

    since = len(sim.requests())
    asyncio.run(main())
    replayed = [r["method"] for r in sim.requests(since) if r.get("replayed")]
    # The second round's first insert and first delete were answered with the first round's operations.
    assert sorted(replayed) == ["disks.delete", "disks.insert"]


def test_a_fresh_operator_also_recovers_a_reused_name(sim: ComputeSim) -> None:
    """After a restart the attempt counters start again at 0: the replay is detected the same way."""
    name = "reused-after-restart"

    async def cycle() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        await cloud.ensure_disk(request(name), idempotency_key=f"lc/{Z}/{name}")
        assert len(inventory(sim, name)) == 1
        await cloud.ensure_deleted(P, Z, name, idempotency_key=f"orphan/{name}")
        assert inventory(sim, name) == []
        await cloud.close()

    asyncio.run(cycle())
    asyncio.run(cycle())


def test_list_disks_everywhere_finds_ours_in_every_zone(sim: ComputeSim) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        await cloud.ensure_disk(request("ev-a", zone="us-east1-c"), idempotency_key="ev-a")
        await cloud.ensure_disk(request("ev-b", zone="europe-west4-b"), idempotency_key="ev-b")
        theirs = DiskRequest(
            P, "us-east1-c", "ev-c", IMAGE, "pd-balanced", 10, labels={"sdworker-cluster": "x"}
        )
        await cloud.ensure_disk(theirs, idempotency_key="ev-c")
        found = await cloud.list_disks_everywhere(P, OURS)
        assert {(d.zone, d.name) for d in found if d.name.startswith("ev-")} == {
            ("us-east1-c", "ev-a"),
            ("europe-west4-b", "ev-b"),
        }
        await cloud.close()

    asyncio.run(main())
