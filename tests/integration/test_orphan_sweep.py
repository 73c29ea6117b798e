"""The warm pool and the orphan sweeper over ``GceCloud`` against the compute simulator.

The sweeper of an operator that has seen no node since it started (restarted after the last one left)
finds a leaked disk only through its configured project (``--project``), and then in a zone it never saw;
it leaves claimed disks, pool disks and other clusters' disks alone. The pool fills to its target and
drains once nobody wants its runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sdworker.api import naming
from sdworker.api.types import DiskType
from sdworker.cloud.gce import GceCloud
from sdworker.cloud.provider import DiskRequest
from sdworker.domain.pool import PoolKey, PoolTarget
from sdworker.orphan_sweep import OrphanSweeper, cluster_disk_labels
from sdworker.warm_pool import WarmPool
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image

P, SEEN, UNSEEN = "sweep-proj", "us-central1-a", "europe-west4-b"
IMAGE = f"projects/{P}/global/images/rt-v1"


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComputeSim]:
    tmp = tmp_path_factory.mktemp("sweep")
    with ComputeSim(SimConfig(latency="fast", block_devices=False, seed=6)) as s:
        s.register_image("rt-v1", make_ext4_image(tmp / "rt.ext4", {"a": "1"}), project=P)
        yield s


def disk_names(sim: ComputeSim) -> set[str]:
    return {str(d["name"]) for d in sim.inventory()["disks"]}


def test_a_restarted_operator_sweeps_its_project_in_zones_it_never_saw(sim: ComputeSim) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        pool = WarmPool(cloud, cluster="sw")
        key = PoolKey(P, SEEN, naming.runtime_id(IMAGE))
        filled = await pool.refill({key: PoolTarget(1, IMAGE, DiskType.PD_BALANCED, 10)}, [])
        assert len(filled.created) == 1
        for name, zone, cluster in (
            ("sw-claimed", SEEN, "sw"),
            ("sw-leaked", UNSEEN, "sw"),
            ("other-leaked", UNSEEN, "other"),
        ):
            request = DiskRequest(
                P, zone, name, IMAGE, "pd-balanced", 10, labels=cluster_disk_labels(cluster)
            )
            await cloud.ensure_disk(request, idempotency_key=name)

        # Nothing seen and no project configured: nowhere to look.
        assert await OrphanSweeper(cloud, cluster="sw").sweep(["sw-claimed"]) == []
        assert "sw-leaked" in disk_names(sim)
        # With --project, the leak in a zone no node of ours was ever seen in is found and deleted.
        sweeper = OrphanSweeper(cloud, cluster="sw", projects=[P])
        assert await sweeper.sweep(["sw-claimed"]) == ["sw-leaked"]
        assert disk_names(sim) >= {"sw-claimed", "other-leaked", *filled.created}
        assert "sw-leaked" not in disk_names(sim)
        assert sweeper.orphans_deleted == 1

        # Nobody wants the runtime any more: its pool drains.
        drained = await pool.refill({}, [(P, SEEN)])
        assert drained.deleted == filled.created
        assert not disk_names(sim) & set(filled.created)
        await cloud.close()

    asyncio.run(main())


def test_with_no_pool_wanted_the_sweeper_takes_pool_disks_in_any_zone(sim: ComputeSim) -> None:
    async def main() -> None:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        key = PoolKey(P, UNSEEN, naming.runtime_id(IMAGE))
        filled = await WarmPool(cloud, cluster="sw").refill(
            {key: PoolTarget(2, IMAGE, DiskType.PD_BALANCED, 10)}, []
        )
        assert len(filled.created) == 2
        sweeper = OrphanSweeper(cloud, cluster="sw", projects=[P])
        # While some SDWorker wants a pool, pool disks are the warm pool's to keep or drain ...
        assert await sweeper.sweep([]) == []
        # ... and once none does, they are orphans wherever they are.
        assert sorted(await sweeper.sweep([], pools_wanted=False)) == sorted(filled.created)
        assert not disk_names(sim) & set(filled.created)
        await cloud.close()

    asyncio.run(main())
