"""Fixtures of the chaos campaign: a world per scenario, the runtime image, and the campaign's table.

``make test`` runs the quick variants (a few operator kills over a dozen nodes, every other fault once);
``make chaos`` (``SDWORKER_CHAOS=full``) adds the ``chaos_full`` ones (100 nodes, 20+ kills). Variants
marked ``chaos_full`` are deselected, not skipped, when the full campaign is not asked for.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.operator_proc import OperatorProcess
from tests.chaos.campaign import Campaign
from tests.chaos.world import Kubelet, World
from tests.integration.conftest import CRDS
from tests.integration.test_agent_support import Harness, RuntimeImage, build_runtime_image

FULL = os.environ.get("SDWORKER_CHAOS") == "full"
_campaign = Campaign()
MakeWorld = Callable[..., World]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_full: the full chaos campaign only (make chaos)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, dropped = [], []
    for item in items:
        if "tests/chaos/" in str(item.path):
            item.add_marker(pytest.mark.cluster)
            if item.get_closest_marker("chaos_full") is not None and not FULL:
                dropped.append(item)
                continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# The campaign's own control plane. Its invariants are judged over the whole cluster (every RuntimeDisk,
# node and SDWorker), and its operators act on every matching node, so nothing another test left in the
# session's cluster (a node, a RuntimeDisk, an SDWorker whose image this simulator cannot resolve) may be
# there: these override the session's ``cluster``, ``api``, ``core`` and ``crds`` for tests/chaos.


@pytest.fixture(scope="package")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        yield c


@pytest.fixture(scope="package")
def api(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture(scope="package")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="package")
def crds(cluster: LocalCluster) -> list[str]:
    """The sdworker CRDs, applied from crds/ and Established, in the campaign's cluster."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    return [
        line.split("/", 1)[1]
        for line in cluster.kubectl("get", "-f", str(CRDS), "-o", "name").split()
        if line.startswith("customresourcedefinition")
    ]


@pytest.fixture(scope="session")
def campaign() -> Campaign:
    return _campaign


@pytest.fixture(scope="session")
def runtime_image(tmp_path_factory: pytest.TempPathFactory) -> RuntimeImage:
    """A small runtime built (and packed for publishing) by the real image builder."""
    return build_runtime_image(
        tmp_path_factory.mktemp("chaos-image"), "sd-chaos", model_bytes=16 << 20, pack=True
    )


@pytest.fixture
def make_world(
    cluster: LocalCluster,
    api: client.ApiClient,
    crds: list[str],
    namespace: str,
    runtime_image: RuntimeImage,
    tmp_path: Path,
) -> Iterator[MakeWorld]:
    """``make_world(sim_config, seed=..., operator_args=(...), operator_env={...})``: a started world, torn
    down after."""
    made: list[tuple[ComputeSim, Harness, OperatorProcess]] = []
    kubelet = Kubelet(cluster, namespace)

    def make(
        config: SimConfig,
        *,
        seed: int,
        operator_args: tuple[str, ...] = (),
        operator_env: dict[str, str] | None = None,
    ) -> World:
        sim = ComputeSim(config).start()
        suffix = f"c{uuid.uuid4().hex[:6]}"
        harness = Harness(cluster, api, sim, namespace, suffix, tmp_path)
        op = OperatorProcess(
            cluster,
            tmp_path / "operator-logs",
            extra_args=[
                "--cloud=gce",
                f"--compute-endpoint={sim.endpoint}",
                "--anonymous-credentials",
                f"--cluster-name={suffix}",
                "--resync-seconds=5",
                "--sweep-seconds=3",
                "--failed-retry-seconds=5",  # a fixed permission or quota is seen within seconds
                *operator_args,
            ],
            verbose=False,
            env=operator_env,
        )
        made.append((sim, harness, op))
        world = World(cluster, api, sim, harness, op, random.Random(seed))
        world.publish(runtime_image.path.parent)
        op.start()
        return world

    try:
        yield make
    finally:
        for sim, harness, op in reversed(made):
            op.stop()
            harness.close()
            sim.stop()
        kubelet.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _campaign.rows:
        return
    terminalreporter.section("chaos campaign")
    for line in _campaign.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {_campaign.write()}")
