"""The runtime image journey through the real producers: build, publish, resolve, agent verify, Ready.

``sdworker image build --from-dir examples/runtime-tree --offline`` and ``sdworker image publish --upload-dir
... --api-endpoint <simulator>`` run as the user runs them (the CLI, as subprocesses). The operator's resolver
(``GceCloud.resolve_image``) must then answer build.json's full 64-hex digest for the image's name and for its
family, and a node following either gets a RuntimeDisk that the node agent verifies against that digest and
brings to Ready. Nothing here writes an image's labels or description: the publisher does.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker.api.types import ResolvedImage
from sdworker.cloud.gce import GceCloud
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.image_support import EXAMPLE_TREE
from tests.integration.test_agent_support import MODEL, SIM_PROJECT, Harness
from tests.unit.invalid_specs import valid_sdworker

SDWORKER = [sys.executable, "-m", "sdworker"]
FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sdworker image build`` of the example runtime tree, through the CLI."""
    out = tmp_path_factory.mktemp("journey") / "out"
    argv = [*SDWORKER, "image", "build", "--from-dir", str(EXAMPLE_TREE), "--out", str(out), "--offline"]
    procs.run([*argv, "--quiet"], timeout=300)
    return out


def recorded_digest(build_dir: Path) -> str:
    digest = str(json.loads((build_dir / "build.json").read_text())["digest"])
    assert FULL_DIGEST.fullmatch(digest), digest
    return digest


def publish_cli(sim: ComputeSim, build_dir: Path, family: str) -> str:
    """``sdworker image publish`` into the simulator; returns the image it prints."""
    argv = [*SDWORKER, "image", "publish", "--build-dir", str(build_dir), "--project", SIM_PROJECT]
    argv += [
        "--upload-dir",
        str(sim.state_dir / "uploads"),
        "--api-endpoint",
        sim.endpoint,
        "--family",
        family,
    ]
    image = procs.run(argv, timeout=300).stdout.strip()
    assert image.startswith(f"projects/{SIM_PROJECT}/global/images/"), image
    return image


def resolve(sim: ComputeSim, image: str) -> ResolvedImage:
    async def main() -> ResolvedImage:
        cloud = GceCloud(api_endpoint=sim.endpoint, anonymous=True)
        try:
            return await cloud.resolve_image(image)
        finally:
            await cloud.close()

    return asyncio.run(main())


def test_a_published_image_resolves_to_the_builds_full_digest_by_name_and_by_family(build_dir: Path) -> None:
    digest = recorded_digest(build_dir)
    with ComputeSim(SimConfig(latency="fast")) as sim:
        image = publish_cli(sim, build_dir, family="sd-runtime")
        family = f"projects/{SIM_PROJECT}/global/images/family/sd-runtime"
        assert resolve(sim, image) == ResolvedImage(image=image, digest=digest)
        assert resolve(sim, family) == ResolvedImage(image=image, digest=digest)
        # Publishing again is a no-op that names the same image, which still resolves the same.
        assert publish_cli(sim, build_dir, family="sd-runtime") == image
        assert resolve(sim, family).digest == digest


@pytest.fixture
def world(
    cluster: LocalCluster, api: client.ApiClient, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[tuple[Harness, OperatorProcess]]:
    """The operator (GCE provider against the simulator) and a harness for nodes and their agents."""
    with ComputeSim(SimConfig(latency="fast")) as sim:
        h = Harness(cluster, api, sim, namespace, f"j{uuid.uuid4().hex[:6]}", tmp_path)
        op = OperatorProcess(
            cluster,
            tmp_path,
            extra_args=[
                "--cloud=gce",
                f"--compute-endpoint={sim.endpoint}",
                "--anonymous-credentials",
                f"--cluster-name={h.suffix}",
            ],
        )
        try:
            op.start()
            yield h, op
        finally:
            op.stop()
            h.close()


@pytest.mark.parametrize("follow", ["name", "family"])
def test_build_publish_resolve_verify_ready(
    world: tuple[Harness, OperatorProcess], build_dir: Path, unique: str, follow: str
) -> None:
    h, op = world
    digest = recorded_digest(build_dir)
    family = f"fam-{h.suffix}"
    image = publish_cli(h.simulator, build_dir, family=family)
    wanted = image if follow == "name" else f"projects/{SIM_PROJECT}/global/images/family/{family}"

    node = h.add_node(f"{unique}"[:40].rstrip("-"))
    body = valid_sdworker("journey", h.namespace)
    body["spec"]["nodeSelector"] = {"sdworker.test/harness": h.suffix}
    body["spec"]["runtime"].update(image=wanted, diskSizeGb=10, prefetch=[MODEL])
    h.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, h.namespace, c.SDWORKER_PLURAL, body)
    h.install(["rbac.yaml", "admission-policy.yaml"])
    h.start_agent(node, h.agent_credentials(node))

    def ready() -> dict[str, Any] | None:
        items = h.custom.list_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, label_selector=f"{c.LABEL_NODE}={node}"
        )["items"]
        h.runtimedisks[:] = [i["metadata"]["name"] for i in items]
        phases = [(i.get("status") or {}).get("phase") for i in items]
        assert "Failed" not in phases, json.dumps(items, indent=1)
        return items[0] if len(items) == 1 and phases == ["Ready"] else None

    rd = wait_for(
        ready, timeout=90, what="the node's RuntimeDisk Ready", describe=lambda: h.describe() + op.log_tail()
    )
    assert (rd["spec"]["image"], rd["spec"]["imageDigest"]) == (image, digest)
    assert f"verified {digest}" in rd["status"]["message"]


def test_an_image_without_sdworker_metadata_degrades_the_sdworker_clearly(
    world: tuple[Harness, OperatorProcess], unique: str
) -> None:
    """An image someone made without ``sdworker image publish``: no digest, so no disk and a clear reason."""
    h, op = world
    foreign = make_ext4_image(h.workdir / "foreign.ext4", {"hello": "world"})
    h.simulator.register_image("not-published", foreign, project=SIM_PROJECT)
    node = h.add_node(f"{unique}"[:40].rstrip("-"))
    body = valid_sdworker("foreign", h.namespace)
    body["spec"]["nodeSelector"] = {"sdworker.test/harness": h.suffix}
    body["spec"]["runtime"]["image"] = f"projects/{SIM_PROJECT}/global/images/not-published"
    h.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, h.namespace, c.SDWORKER_PLURAL, body)

    def degraded() -> dict[str, Any] | None:
        obj = h.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, h.namespace, c.SDWORKER_PLURAL, "foreign"
        )
        conds = {x["type"]: x for x in (obj.get("status") or {}).get("conditions") or []}
        return conds["Degraded"] if conds.get("Degraded", {}).get("status") == "True" else None

    cond = wait_for(degraded, timeout=30, what="Degraded for the unpublished image", describe=op.log_tail)
    assert cond["reason"] == "ImageMetadataInvalid"
    assert "not-published: description is empty" in cond["message"]
    assert "sdworker image publish" in cond["message"]
    items = h.custom.list_cluster_custom_object(
        c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, label_selector=f"{c.LABEL_NODE}={node}"
    )["items"]
    assert items == []
