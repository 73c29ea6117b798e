"""The operator ``kill -9``-ed at seeded random moments in a scale-out and a scale-in, then the invariants.

The moments are points of progress drawn from a seeded generator: during the scale-out, the sum over the
RuntimeDisks of how far each has come (Pending 1 .. Attached 4); during the scale-in, how many of the removed
nodes' RuntimeDisks are gone. Progress, not a clock, so a slow machine strikes at the same stages. Each kill
is followed at once by a fresh operator (its replacement pod), which must pick up every half-done create,
attach, detach and delete without leaking a disk or attaching one twice.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sdworker_tools.computesim import SimConfig
from sdworker_tools.wait import wait_for
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.world import World

RANK = {"Pending": 1, "Creating": 2, "Attaching": 3, "Attached": 4}


@dataclass(frozen=True)
class Size:
    nodes: int
    kills_out: int
    kills_in: int


QUICK = Size(nodes=12, kills_out=3, kills_in=2)
FULL = Size(nodes=100, kills_out=14, kills_in=8)


def reached(
    progress: Callable[[], int], mark: int, done: concurrent.futures.Future[None] | None = None
) -> bool:
    return progress() >= mark or (done is not None and done.done())


def kill_through_scale_out_and_in(
    w: World, size: Size, runtime: dict[str, Any]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Scale out to ``size.nodes`` and back to none, ``kill -9``-ing the operator at seeded moments."""
    w.create_sdworker("kills", replicas=size.nodes, **runtime)
    nodes = w.add_nodes(f"{w.label}-{i:03d}" for i in range(size.nodes))

    def progress_out() -> int:
        return sum(RANK.get((d.get("status") or {}).get("phase", ""), 0) for d in w.runtimedisks())

    for mark in sorted(w.rng.sample(range(1, 4 * size.nodes), size.kills_out)):
        wait_for(
            functools.partial(reached, progress_out, mark),
            timeout=300,
            what=f"scale-out progress {mark}",
            describe=w.describe,
        )
        w.kill_operator()
    out = settle(w, phase="Attached", timeout=300)

    # Scale-in of all nodes but one, by the "autoscaler" in the background, while the operator keeps dying;
    # then the last one. (An operator restarted after the last node left is its own case:
    # test_races.py::test_a_shared_disk_is_swept_by_an_operator_restarted_after_the_last_node_left.)
    gone_marks = sorted(w.rng.sample(range(size.nodes - 1), size.kills_in))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        removal = pool.submit(w.remove_nodes, nodes[:-1])

        def progress_in() -> int:
            return size.nodes - len(w.runtimedisks())

        for mark in gone_marks:
            wait_for(
                functools.partial(reached, progress_in, mark, removal),
                timeout=300,
                what=f"scale-in progress {mark}",
                describe=w.describe,
            )
            w.kill_operator()
        removal.result()
    w.remove_node(nodes[-1])
    w.delete_sdworker("kills")
    end = settle(w, phase=None, final=True, timeout=300)
    return out, end


@pytest.mark.parametrize(
    "size", [pytest.param(QUICK, id="quick"), pytest.param(FULL, id="full", marks=pytest.mark.chaos_full)]
)
def test_operator_kill9_during_scale_out_and_scale_in(
    make_world: MakeWorld, campaign: Campaign, size: Size, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    # API-only disks (no loop devices) for a 100-node run; operations slow enough to be caught mid-way, and
    # a few answers lost after the cloud acted, so a restarted operator must replay, not redo.
    w = make_world(
        SimConfig(
            latency="fast",
            block_devices=False,
            seed=16,
            latency_overrides={"disks.insert": 0.4, "instances.attachDisk": 0.3, "instances.detachDisk": 0.2},
            lost_response_rate=0.02,
        ),
        seed=16,
    )
    out, end = kill_through_scale_out_and_in(w, size, {})
    results = merge(out, end)
    campaign.record(
        Row(
            f"operator kill -9: scale-out {size.nodes} / scale-in {size.nodes} ({request.node.callspec.id})",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert w.faults["operator kill -9"] == size.kills_out + size.kills_in
    assert violations(results) == []


@pytest.mark.parametrize(
    ("what", "runtime"),
    [
        pytest.param("warm pool of 3", {"warmPool": {"size": 3}}, id="pool"),
        pytest.param(
            "SharedReadOnly hyperdisk-ml", {"mode": "SharedReadOnly", "diskType": "hyperdisk-ml"}, id="shared"
        ),
    ],
)
def test_operator_kill9_with_a_warm_pool_or_shared_disks(
    make_world: MakeWorld, campaign: Campaign, what: str, runtime: dict[str, Any]
) -> None:
    started = time.monotonic()
    size = Size(nodes=6, kills_out=2, kills_in=2)
    w = make_world(
        SimConfig(
            latency="fast",
            block_devices=False,
            seed=17,
            latency_overrides={"disks.insert": 0.4, "instances.attachDisk": 0.3, "instances.detachDisk": 0.2},
        ),
        seed=17,
    )
    out, end = kill_through_scale_out_and_in(w, size, runtime)
    results = merge(out, end)
    campaign.record(
        Row(
            f"operator kill -9 with a {what}: {size.nodes} nodes out and in",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert violations(results) == []
