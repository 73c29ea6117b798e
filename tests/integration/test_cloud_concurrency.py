"""Disk operations of many nodes are in flight together, as many as the cloud's own threads allow.

The compute client is blocking: every call runs in a thread, and waiting for an operation
(``zoneOperations.wait``, a long poll) holds its thread until the operation is done. On asyncio's default
executor (min(32, CPUs + 4) threads: 6 on a 2-CPU node) a burst of 10 nodes' disk creates queued behind the
first 6 (``bench/bench_scaleout.py`` pernode-10, realistic profile: the 10th ``disks.insert`` sent 24 s
late). ``GceCloud`` now runs its calls on threads of its own (``cloud.provider.CLOUD_THREADS``,
``--cloud-threads``). The real client against the simulator, whose operation log says when each
operation was accepted and when it ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdworker.cloud.gce import GceCloud
from sdworker.cloud.provider import CLOUD_THREADS, DiskRequest
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image

P, Z = "concurrency-proj", "us-central1-a"
IMAGE = f"projects/{P}/global/images/rt-v1"
DISKS = 12  # more than the default executor's 6 threads here


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComputeSim]:
    # Each create lasts 1.5 s: creates in flight together overlap by far more than any scheduling delay.
    config = SimConfig(latency="fast", block_devices=False, seed=5, latency_overrides={"disks.insert": 1.5})
    with ComputeSim(config) as s:
        s.register_image("rt-v1", make_ext4_image(tmp_path / "rt.ext4", {"a": "1"}), project=P)
        yield s


def inserts(sim: ComputeSim) -> list[dict[str, Any]]:
    """The simulator's records of every ``disks.insert``, in the order they were accepted."""
    ops = [o["_sim"] for o in sim.operations() if o["_sim"]["method"] == "disks.insert"]
    return sorted(ops, key=lambda op: op["insertedAt"])


def burst_then_one_more(sim: ComputeSim, **options: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``DISKS`` creates at once; once all are accepted (their waits now hold threads), one more create, as
    a node joining a moment after a burst. Returns the burst's inserts and the late one's."""

    def request(i: int) -> DiskRequest:
        return DiskRequest(P, Z, f"disk-{i}", IMAGE, "pd-balanced", 10, labels={})

    async def main() -> None:
        cloud = GceCloud(
            api_endpoint=sim.endpoint, anonymous=True, write_rate=100, write_burst=DISKS + 1, **options
        )
        try:
            burst = [
                asyncio.create_task(cloud.ensure_disk(request(i), idempotency_key=f"disk-{i}"))
                for i in range(DISKS)
            ]
            deadline = time.monotonic() + 30
            while len(inserts(sim)) < DISKS:
                assert time.monotonic() < deadline, "the burst's creates were not all accepted in 30 s"
                await asyncio.sleep(0.05)
            late = cloud.ensure_disk(request(DISKS), idempotency_key=f"disk-{DISKS}")
            await asyncio.gather(*burst, late)
        finally:
            await cloud.close()

    asyncio.run(main())
    ops = inserts(sim)
    assert len(ops) == DISKS + 1
    return ops[:DISKS], ops[DISKS]


def test_a_create_after_a_burst_is_sent_at_once(sim: ComputeSim) -> None:
    assert CLOUD_THREADS > DISKS
    burst, late = burst_then_one_more(sim)
    # Accepted before any of the burst's creates ended: it waited for no thread.
    assert late["insertedAt"] < min(op["endedAt"] for op in burst)


def test_the_thread_count_caps_the_operations_waited_on(sim: ComputeSim) -> None:
    burst, late = burst_then_one_more(sim, threads=4)
    # With 4 threads, 4 of the burst's waits hold them all: the late create goes out once one has ended.
    assert late["insertedAt"] >= min(op["endedAt"] for op in burst)
