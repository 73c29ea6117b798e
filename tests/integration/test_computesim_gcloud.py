"""The real ``gcloud`` CLI against the simulator, with a throwaway CLOUDSDK_CONFIG.

Proves the simulator is faithful enough for the tool an SRE reaches for: list, describe, create,
attach (which waits on the zone operation and re-reads the instance, as gcloud does), a batched
delete of several disks, and the 404 message gcloud prints.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdworker_tools.computesim import ComputeSim, SimConfig, gcloud
from sdworker_tools.computesim.testing import loop_devices_usable, make_ext4_image

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud CLI not installed"),
    pytest.mark.skipif(not loop_devices_usable(), reason="needs root and /dev/loop-control"),
]

PROJECT = "sim-project"
ZONE = "us-central1-a"


@dataclass
class Env:
    sim: ComputeSim
    env: dict[str, str]

    def gcloud(self, *args: str) -> str:
        return gcloud.run(args, self.env).stdout

    def gcloud_json(self, *args: str) -> object:
        return json.loads(self.gcloud(*args, "--format=json"))

    def make_disk(self, name: str, **body: object) -> None:
        """A READY disk, made directly through the engine (set-up, not under test)."""
        params = {"project": PROJECT, "zone": ZONE}
        path = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}"
        op = self.sim.engine.call("disks.insert", f"{path}/disks", params, {}, {"name": name, **body})
        self.sim.engine.call(
            "zoneOperations.wait",
            f"{path}/operations/{op['name']}/wait",
            {**params, "operation": op["name"]},
            {},
            None,
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("computesim-gcloud")
    image = make_ext4_image(work / "runtime.ext4", {"hello.txt": "from the runtime disk\n"})
    with ComputeSim(SimConfig(latency="fast")) as sim:
        sim.register_image("sd-runtime-v1", image, project=PROJECT, family="sd-runtime")
        sim.create_instance("gpu-node-1", zone=ZONE, project=PROJECT)
        yield Env(sim, gcloud.write_config(work / "gcloud-config", sim.api_base, PROJECT))


def test_gcloud_creates_lists_and_describes_disks(env: Env) -> None:
    env.gcloud(
        "compute",
        "disks",
        "create",
        "sdw-runtime-1",
        f"--zone={ZONE}",
        "--image-family=sd-runtime",
        f"--image-project={PROJECT}",
        "--size=10GB",
        "--type=pd-balanced",
        "--labels=sdworker-managed=true,sdworker-node=gpu-node-1",
    )
    listed = env.gcloud_json("compute", "disks", "list", "--filter=name=sdw-runtime-1")
    assert isinstance(listed, list)
    (disk,) = listed
    assert disk["name"] == "sdw-runtime-1"
    assert disk["labels"] == {"sdworker-managed": "true", "sdworker-node": "gpu-node-1"}
    assert disk["status"] == "READY"
    described = env.gcloud_json("compute", "disks", "describe", "sdw-runtime-1", f"--zone={ZONE}")
    assert isinstance(described, dict)
    assert described["sourceImage"].endswith(f"/projects/{PROJECT}/global/images/sd-runtime-v1")
    assert described["sizeGb"] == "10"
    assert described["type"].endswith("/diskTypes/pd-balanced")
    # The request went through the API (aggregatedList for a list without --zones).
    methods = {r["method"] for r in env.sim.requests()}
    assert {"disks.insert", "disks.aggregatedList", "disks.get"} <= methods


def test_gcloud_attach_disk_exposes_the_block_device(env: Env) -> None:
    env.make_disk("sdw-runtime-2", sourceImage=f"projects/{PROJECT}/global/images/sd-runtime-v1")
    env.gcloud(
        "compute",
        "instances",
        "attach-disk",
        "gpu-node-1",
        "--disk=sdw-runtime-2",
        f"--zone={ZONE}",
        "--device-name=sdworker-runtime",
        "--mode=ro",
    )
    link = env.sim.dev_root("gpu-node-1") / "disk" / "by-id" / "google-sdworker-runtime"
    assert os.readlink(link).startswith("/dev/loop")
    instance = env.gcloud_json("compute", "instances", "describe", "gpu-node-1", f"--zone={ZONE}")
    assert isinstance(instance, dict)
    (attached,) = instance["disks"]
    assert attached["deviceName"] == "sdworker-runtime"
    assert attached["mode"] == "READ_ONLY"
    users = env.gcloud("compute", "disks", "list", "--format=value(users)")
    assert "instances/gpu-node-1" in users
    env.gcloud("compute", "instances", "detach-disk", "gpu-node-1", "--disk=sdw-runtime-2", f"--zone={ZONE}")
    assert not link.is_symlink()


def test_gcloud_deletes_several_disks_in_one_batch(env: Env) -> None:
    for name in ("scratch-a", "scratch-b"):
        env.make_disk(name, sizeGb="1")
    before = len(env.sim.requests())
    env.gcloud("compute", "disks", "delete", "scratch-a", "scratch-b", f"--zone={ZONE}")
    names = {d["name"] for d in env.sim.inventory()["disks"]}
    assert not names & {"scratch-a", "scratch-b"}
    deletes = [r for r in env.sim.requests()[before:] if r["method"] == "disks.delete"]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in deletes) == ["scratch-a", "scratch-b"]


def test_gcloud_reports_the_api_error(env: Env) -> None:
    result = gcloud.run(["compute", "disks", "describe", "missing", f"--zone={ZONE}"], env.env, check=False)
    assert result.returncode != 0
    assert f"The resource 'projects/{PROJECT}/zones/{ZONE}/disks/missing' was not found" in result.stderr


def test_gcloud_config_is_private(env: Env) -> None:
    config_dir = Path(env.env["CLOUDSDK_CONFIG"])
    assert (config_dir / "configurations" / "config_default").is_file()
    assert env.env["CLOUDSDK_CONFIG"] != os.environ.get("CLOUDSDK_CONFIG")
