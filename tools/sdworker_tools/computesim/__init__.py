"""A local compute v1 API simulator for tests: real HTTP, real clients, real block devices.

Why: the operator's cloud layer must be tested with the library it ships with
(google-cloud-compute over REST) and the node agent must mount real block devices, without a
cloud project. The simulator speaks the subset of compute v1 sdworker uses, closely enough that
both ``google.cloud.compute_v1`` and the ``gcloud`` CLI work against it, and backs every attached
disk with a loop device published at ``<devroot>/disk/by-id/google-<deviceName>``.

Owns: the simulated project state, latency profiles (``latency``), quotas (``quota``), fault
injection (``config.FaultRule``), ``requestId`` idempotency (``idempotency``), list filters
(``filters``), and the loop devices and files behind disks (``blockdev``). Test-only: it lives in
``tools/`` and is never shipped in a product image.

Start it in-process::

    with ComputeSim(SimConfig(latency="fast")) as sim:
        sim.register_image("sd-runtime-v1", Path("rootfs.ext4"), family="sd-runtime")
        sim.create_instance("gpu-node-0", zone="us-central1-a")
        disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))

or as a process: ``python -m sdworker_tools.computesim --port 0 --latency-profile realistic``
(prints its URL). Admin API: ``GET /_sim/inventory``, ``/_sim/operations``, ``/_sim/requests``,
``/_sim/config``; ``POST /_sim/config``, ``/_sim/faults``, ``/_sim/images``, ``/_sim/instances``,
``/_sim/images/hold`` and ``/_sim/images/release`` (an image not ready, in some zones or everywhere,
until released: ``disks.insert`` from it answers 400 ``resourceNotReady``); ``DELETE /_sim/faults``.

Layout: ``core`` (the call pipeline and operations) over ``state``; one module of handlers per
resource (``images``, ``disks``, ``instances``, ``zones`` with operations), ``admin`` for what tests
do from outside the API, ``engine`` putting them together, ``routes`` and ``server`` for HTTP.

Latency profiles (see ``latency``): ``fast`` for tests (10-50 ms per operation), ``realistic``
(disk from image ~6 s, +20 s + 2 s/GiB for the first disk of an image in a zone, attach/detach
~3 s, from research/peers.md §8), ``instant``.
"""

from sdworker_tools.computesim.clients import client_kwargs
from sdworker_tools.computesim.config import DEFAULT_ZONES, FaultRule, SimConfig
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.latency import PROFILES, LatencyProfile
from sdworker_tools.computesim.server import ComputeSim

__all__ = [
    "DEFAULT_ZONES",
    "PROFILES",
    "ApiError",
    "ComputeSim",
    "FaultRule",
    "LatencyProfile",
    "SimConfig",
    "client_kwargs",
]
