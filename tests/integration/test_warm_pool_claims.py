"""Nodes that join together claim different warm-pool disks at once, not one after another.

Each new node's claim runs as its own key of the operator's work queue, side by side. They used to list the
pool and all try its first disk: one won, the others waited for its setLabels operation (the cloud client's
per-disk lock), lost the label-fingerprint race and tried the next, so the k-th node waited for k setLabels
operations (``bench/bench_scaleout.py`` pool-10, realistic
profile: claims finished 1.4 s apart, the 10th 15.9 s after its node). The pool, its targets and the nodes'
RuntimeDisk specs come from the operator's own producers (``domain.placement.place``,
``domain.pool.pool_targets``, ``WarmPool.refill``), the cloud is the real client against the simulator,
whose operation log shows whether the claims were in flight together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker.api.parse import parse_sdworker
from sdworker.api.types import ResolvedImage
from sdworker.cloud.gce import GceCloud
from sdworker.domain.placement import NodeInfo, place
from sdworker.domain.pool import pool_targets
from sdworker.warm_pool import WarmPool
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image
from tests.unit.invalid_runtimedisks import DIGEST, IMAGE, PROJECT, ZONE
from tests.unit.invalid_specs import valid_sdworker

NODES = [f"gke-sd-gpu-pool-claims-{i}" for i in range(4)]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComputeSim]:
    # setLabels lasts 1 s, so claims that are really concurrent overlap by far more than any scheduling delay.
    config = SimConfig(
        latency="fast", block_devices=False, seed=3, latency_overrides={"disks.setLabels": 1.0}
    )
    with ComputeSim(config) as s:
        s.register_image(
            IMAGE.rsplit("/", 1)[1], make_ext4_image(tmp_path / "rt.ext4", {"a": "1"}), project=PROJECT
        )
        yield s


def test_concurrent_claims_take_different_disks_side_by_side(sim: ComputeSim) -> None:
    manifest = valid_sdworker()
    manifest["spec"]["runtime"]["warmPool"] = {"size": len(NODES)}
    worker = parse_sdworker(manifest)
    resolved = {worker.spec.runtime.image: ResolvedImage(IMAGE, DIGEST)}
    nodes = [NodeInfo(n, dict(worker.spec.node_selector), f"gce://{PROJECT}/{ZONE}/{n}") for n in NODES]
    desired = place(nodes, [worker], resolved, cluster="claims").desired
    assert len(desired) == len(NODES)

    async def main() -> list[str | None]:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        pool = WarmPool(cloud, cluster="claims")
        try:
            report = await pool.refill(pool_targets(desired, [worker], resolved), [])
            assert len(report.created) == len(NODES)
            return await asyncio.gather(*(pool.claim(spec) for spec in desired.values()))
        finally:
            await cloud.close()

    claimed = asyncio.run(main())
    assert None not in claimed
    assert len(set(claimed)) == len(NODES)  # every node its own disk
    labels = [o["_sim"] for o in sim.operations() if o["_sim"]["method"] == "disks.setLabels"]
    # One setLabels per node (no lost fingerprint races), all accepted before the first one finished.
    assert len(labels) == len(NODES)
    assert max(op["insertedAt"] for op in labels) < min(op["endedAt"] for op in labels)
