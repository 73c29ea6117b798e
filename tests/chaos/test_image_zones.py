"""A zone the runtime image has not reached yet: nodes join there, wait visibly, and are served once it has.

The simulator holds the published image not ready in the nodes' zone (``ComputeSim.hold_image``): the image
stays READY in ``images.get`` and ``getFromFamily`` (images are global), but ``disks.insert`` from it in that
zone answers 400 ``resourceNotReady`` "The resource 'projects/P/global/images/X' is not ready", as GCE
answers an insert from an image that is not READY (Compute Engine API reference, ``Image.status``; the
wording from ZcashFoundation/zebra#5044). The operator must treat it as transient (``sdworker.cloud.errors``:
``ImageNotReady``, retried), say so on each waiting RuntimeDisk and in an Event while it lasts, create nothing
half-way, and serve every node once the image is released; then the invariants, through scale-in.
"""

from __future__ import annotations

import functools
import time

from sdworker_tools.computesim import SimConfig
from sdworker_tools.wait import wait_for
from tests.chaos import invariants as inv
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.test_cloud_faults import shows
from tests.chaos.world import SIM_PROJECT, ZONE, World

FAULT = "image not yet copied to the zone, until it is"
REASONS = frozenset({"ImageNotReady"})  # the error table's reason for an image's resourceNotReady (retried)


def refused_inserts(w: World) -> int:
    """``disks.insert`` calls the simulator refused because the image was not ready there."""
    return sum(
        1 for r in w.sim.requests() if r["method"] == "disks.insert" and r["reason"] == "resourceNotReady"
    )


def test_nodes_in_a_zone_without_the_image_wait_visibly_and_are_served_once_it_arrives(
    make_world: MakeWorld, campaign: Campaign
) -> None:
    started = time.monotonic()
    w = make_world(SimConfig(latency="fast", block_devices=False, seed=8), seed=8)
    (image,) = [i["name"] for i in w.sim.inventory()["images"]]
    w.sim.hold_image(image, project=SIM_PROJECT, zones=[ZONE])
    w.create_sdworker("cold", replicas=100)
    nodes = [f"{w.label}-cold-{j}" for j in range(3)]
    start = time.time()
    w.add_nodes(nodes)
    # While the image is missing from the zone every new node's RuntimeDisk says why it waits ...
    wait_for(
        functools.partial(shows, w, nodes, REASONS),
        timeout=120,
        what="the image-not-ready reason on every new RuntimeDisk",
        describe=w.describe,
    )
    # ... and nothing was created or attached half-way: the refused inserts reserved nothing.
    assert [d["name"] for d in w.sim.inventory()["disks"]] == []
    assert refused_inserts(w) >= len(nodes)
    assert not w.served()
    # The copy reaches the zone.
    w.sim.release_image(image, project=SIM_PROJECT)
    windows = [inv.FaultWindow(FAULT, REASONS, start, time.time())]
    w.faults[FAULT] += 1
    w.faults["sim 400 resourceNotReady"] = refused_inserts(w)
    out = settle(w, phase="Attached", windows=windows, timeout=120)
    w.remove_nodes(nodes)
    w.delete_sdworker("cold")
    end = settle(w, phase=None, final=True, timeout=120)
    results = merge(out, end)
    campaign.record(Row(f"{FAULT} ({len(nodes)} nodes)", w.all_faults(), results, time.monotonic() - started))
    assert violations(results) == []
