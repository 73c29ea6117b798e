"""A warm pool no longer wanted is emptied by the refill itself, which now skips its disk listing while no
pool is wanted (issue 15: at 1000 nodes every placement pass listed the zone's 1000 disks).

The operator runs against the compute simulator with its resync and orphan sweep an hour apart, so only
the refill that follows the SDWorker's change can delete the pool's disks in time. Fixtures and helpers are
``tests/integration/test_cloud_operator.py``'s (the example runtime image published to the simulator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.wait import wait_for
from tests.integration import test_cloud_operator as cloud
from tests.integration.conftest import OperatorProcess

built = cloud.built
sim = cloud.sim
ZONE = "us-central1-c"


@pytest.fixture(scope="module")
def quiet_operator(
    cluster: LocalCluster, crds: list[str], sim: ComputeSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster,
        tmp_path_factory.mktemp("pool-operator-logs"),
        extra_args=[
            "--cloud=gce",
            f"--compute-endpoint={sim.endpoint}",
            "--anonymous-credentials",
            "--cluster-name=refill",
            "--resync-seconds=3600",
            "--sweep-seconds=3600",
        ],
    )
    op.start()
    yield op
    op.stop()


def test_a_pool_set_to_zero_is_emptied_without_a_resync_or_sweep(
    cluster: LocalCluster,
    sim: ComputeSim,
    api: client.ApiClient,
    core: client.CoreV1Api,
    namespace: str,
    unique: str,
    quiet_operator: OperatorProcess,
) -> None:
    prefix = f"rf-{unique}"[:30]
    selector = {"test-pool": unique}
    node = f"{prefix}-0"
    cloud.sdworker(api, namespace, "pooled", selector, warmPool={"size": 2})
    cloud.add_node(cluster, sim, node, selector, zone=ZONE)

    def pool() -> list[dict[str, Any]]:
        return cloud.pool_disks(sim, "refill", ZONE)

    wait_for(lambda: len(pool()) == 2, timeout=60, what="the warm pool to fill to 2", describe=pool)
    cloud.custom(api).patch_namespaced_custom_object(
        cloud.GROUP,
        cloud.VERSION,
        namespace,
        "sdworkers",
        "pooled",
        {"spec": {"runtime": {"warmPool": {"size": 0}}}},
    )
    wait_for(lambda: not pool(), timeout=60, what="the unwanted pool's disks to be deleted", describe=pool)
    cloud.scale_in(api, core, sim, [node], zone=ZONE)
