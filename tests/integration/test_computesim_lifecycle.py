"""The simulator's lifecycle: nothing leaks, the CLI works, a killed run is cleaned up next time.

Other tests on this machine use loop devices too, so leak checks look only at devices backed by
files under this simulator's state directory and at the devices it reported using.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from sdworker_tools import procs
from sdworker_tools.computesim import ComputeSim, SimConfig, client_kwargs
from sdworker_tools.computesim.blockdev import backing_file, loop_devices_under
from sdworker_tools.computesim.testing import (
    admin,
    loop_devices_usable,
    losetup_list,
    make_ext4_image,
    wait_operation,
)
from sdworker_tools.wait import wait_for

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not loop_devices_usable(), reason="needs root and /dev/loop-control"),
]

PROJECT = "sim-project"
ZONE = "us-central1-a"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ext4_image(tmp_path_factory.mktemp("computesim-life") / "img.ext4", {"a.txt": "a\n"})


def insert_disk(disks: compute_v1.DisksClient, name: str, source_image: str) -> Any:
    """``disks.insert`` (with a request id) of ``name`` from ``source_image`` in ZONE; the operation."""
    return disks.insert_unary(
        request=compute_v1.InsertDiskRequest(
            project=PROJECT,
            zone=ZONE,
            request_id=str(uuid.uuid4()),
            disk_resource=compute_v1.Disk(name=name, source_image=source_image),
        )
    )


def provision(endpoint: str, disks: list[tuple[str, str, str]]) -> None:
    """(disk, instance, mode): create each disk from image "img" and attach it."""
    kw = client_kwargs(endpoint)
    disk_client = compute_v1.DisksClient(**kw)
    instances = compute_v1.InstancesClient(**kw)
    ops = compute_v1.ZoneOperationsClient(**kw)
    created = set()
    for disk, instance, mode in disks:
        if disk not in created:
            op = insert_disk(disk_client, disk, f"projects/{PROJECT}/global/images/img")
            assert not wait_operation(ops, op, project=PROJECT, zone=ZONE).error.errors
            created.add(disk)
        op = instances.attach_disk_unary(
            project=PROJECT,
            zone=ZONE,
            instance=instance,
            attached_disk_resource=compute_v1.AttachedDisk(
                source=f"zones/{ZONE}/disks/{disk}", device_name=disk, mode=mode
            ),
        )
        assert not wait_operation(ops, op, project=PROJECT, zone=ZONE).error.errors


def url_in(url_file: Path) -> str | None:
    """The URL the CLI wrote, once it has."""
    return url_file.read_text().strip() or None if url_file.exists() else None


def assert_released(loops: list[str], state_dir: Path) -> None:
    now = losetup_list()
    for loop in loops:
        assert not now.get(loop, "").startswith(str(state_dir)), f"{loop} still backed by {now[loop]}"
    assert not [back for back in now.values() if back.startswith(str(state_dir))]


def test_stop_releases_every_loop_device_and_file(image: Path, tmp_path: Path) -> None:
    before = losetup_list()
    dev_base = tmp_path / "nodes"
    config = SimConfig(latency="fast", dev_base=dev_base)
    with ComputeSim(config) as sim:
        sim.register_image("img", image, project=PROJECT)
        for node in ("node-a", "node-b"):
            sim.create_instance(node, zone=ZONE, project=PROJECT)
        provision(
            sim.endpoint,
            [
                ("rw-disk", "node-a", "READ_WRITE"),
                ("shared", "node-a", "READ_ONLY"),
                ("shared", "node-b", "READ_ONLY"),
            ],
        )
        inventory = sim.inventory()
        loops = inventory["loopDevices"]
        assert len(loops) == 3
        state_dir = sim.state_dir
        files = [Path(d["_sim"]["file"]) for d in inventory["disks"]] + [
            Path(inventory["images"][0]["_sim"]["file"])
        ]
        assert all(f.exists() for f in files)
        during = losetup_list()
        assert {loop: during[loop] for loop in loops} == {
            loop: backing_file(loop) for loop in loops
        }  # `losetup -a` shows our devices backed by our files
        # Left attached on purpose: stop must clean up after a test that did not.
    assert_released(loops, state_dir)
    assert not any(f.exists() for f in files)
    assert not state_dir.exists()
    assert list(dev_base.iterdir()) == []  # by-id links and per-instance dev roots are gone
    after = losetup_list()
    assert set(after) - set(before) <= {d for d, back in after.items() if not back.startswith(str(state_dir))}


def test_stop_with_operations_in_flight_is_prompt_and_clean(image: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    sim = ComputeSim(SimConfig(latency="fast", state_dir=state_dir)).start()
    try:
        sim.register_image("img", image, project=PROJECT)
        sim.create_instance("node-a", zone=ZONE, project=PROJECT)
        provision(sim.endpoint, [("attached", "node-a", "READ_WRITE")])
        loops = sim.inventory()["loopDevices"]
        sim.configure(latency_overrides={"disks.insert": 30.0, "instances.detachDisk": 30.0})
        disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))
        disks.insert_unary(
            project=PROJECT,
            zone=ZONE,
            disk_resource=compute_v1.Disk(name="slow", source_image=f"projects/{PROJECT}/global/images/img"),
        )
        compute_v1.InstancesClient(**client_kwargs(sim.endpoint)).detach_disk_unary(
            project=PROJECT, zone=ZONE, instance="node-a", device_name="attached"
        )
    finally:
        started = time.monotonic()
        sim.stop()
        stop_s = time.monotonic() - started
    assert stop_s < 5
    assert_released(loops, state_dir)
    # A given state directory stays; only what the simulator put there goes.
    assert state_dir.is_dir()
    assert sorted(p.name for p in state_dir.iterdir()) == ["nodes"]


def start_cli(tmp_path: Path, *args: str) -> tuple[procs.Process, Path, Path]:
    """``python -m sdworker_tools.computesim`` with instance node-a, a state directory and a URL file under
    ``tmp_path``, and ``args``; the process, its state directory and its URL file."""
    state_dir, url_file = tmp_path / "state", tmp_path / "url"
    argv = [sys.executable, "-m", "sdworker_tools.computesim", "--state-dir", str(state_dir)]
    argv += ["--instance", f"{PROJECT}/{ZONE}/node-a", "--url-file", str(url_file), *args]
    return procs.Process("computesim", argv, tmp_path / "computesim.log"), state_dir, url_file


def test_cli_serves_prints_its_url_and_cleans_up_on_sigterm(image: Path, tmp_path: Path) -> None:
    proc, state_dir, url_file = start_cli(
        tmp_path, "--port", "0", "--latency-profile", "fast", "--image", f"{PROJECT}/img={image}@sd-runtime"
    )
    try:
        url = wait_for(
            lambda: url_in(url_file),
            timeout=30,
            what="the simulator's URL",
            describe=proc.log_tail,
        )
        assert url.startswith("http://127.0.0.1:")
        assert admin(url, "GET", "/_sim/health") == {"ok": True}
        provision(url, [("d1", "node-a", "READ_ONLY")])
        link = state_dir / "nodes" / "node-a" / "dev" / "disk" / "by-id" / "google-d1"
        assert os.readlink(link).startswith("/dev/loop")
        assert loop_devices_under(state_dir)
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(30)
        proc.stop()
    assert proc.popen.returncode == 0
    first_line = proc.log_path.read_text().splitlines()[0]
    assert first_line == url
    assert loop_devices_under(state_dir) == []
    assert not link.is_symlink()


def test_a_killed_simulators_loop_devices_are_swept_by_the_next_run(image: Path, tmp_path: Path) -> None:
    proc, state_dir, url_file = start_cli(tmp_path, "--image", f"{PROJECT}/img={image}")
    try:
        url = wait_for(lambda: url_in(url_file), timeout=30, what="URL", describe=proc.log_tail)
        provision(url, [("d1", "node-a", "READ_WRITE")])
        leftovers = loop_devices_under(state_dir)
        assert len(leftovers) == 1
    finally:
        proc.popen.kill()  # no cleanup at all
        proc.popen.wait(10)
        proc.stop()
    assert loop_devices_under(state_dir) == leftovers  # leaked, as a crash would
    with ComputeSim(SimConfig(state_dir=state_dir)):
        assert loop_devices_under(state_dir) == []
    assert not (state_dir / "disks").exists()


def test_admin_http_api(image: Path) -> None:
    with ComputeSim(SimConfig(latency="fast")) as sim:
        url = sim.url
        image_json = admin(
            url,
            "POST",
            "/_sim/images",
            {"project": PROJECT, "name": "img", "file": str(image), "family": "f"},
        )
        assert image_json["status"] == "READY"
        assert admin(url, "POST", "/_sim/instances", {"project": PROJECT, "zone": ZONE, "name": "n1"})[
            "status"
        ] == ("RUNNING")
        config = admin(url, "POST", "/_sim/config", {"latency": "instant", "write_quota_per_s": 50})
        assert config["latency"] == "instant"
        assert config["write_quota_per_s"] == 50
        assert admin(url, "GET", "/_sim/config") == config
        faults = admin(
            url,
            "POST",
            "/_sim/faults",
            {"method": "disks.insert", "kind": "operation", "code": "QUOTA_EXCEEDED"},
        )
        assert faults["faults"][0]["code"] == "QUOTA_EXCEEDED"
        disks = compute_v1.DisksClient(**client_kwargs(sim.endpoint))
        op = insert_disk(disks, "d1", f"projects/{PROJECT}/global/images/family/f")
        done = wait_operation(
            compute_v1.ZoneOperationsClient(**client_kwargs(sim.endpoint)), op, project=PROJECT, zone=ZONE
        )
        assert done.error.errors[0].code == "QUOTA_EXCEEDED"
        assert admin(url, "DELETE", "/_sim/faults") == {"faults": []}
        inventory = admin(url, "GET", "/_sim/inventory")
        assert [i["name"] for i in inventory["instances"]] == ["n1"]
        assert inventory["disks"] == []
        (logged_op,) = admin(url, "GET", "/_sim/operations")["operations"]
        assert logged_op["_sim"]["method"] == "disks.insert"
        assert logged_op["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
        requests = admin(url, "GET", "/_sim/requests")["requests"]
        writes = [r for r in requests if r["write"]]
        assert [(r["method"], r["status"]) for r in writes] == [("disks.insert", 200)]
        assert admin(url, "GET", f"/_sim/requests?since={requests[-1]['seq']}")["requests"] == []
        with pytest.raises(urllib.error.HTTPError) as exc:
            admin(url, "POST", "/_sim/config", {"port": 1})
        assert exc.value.code == 400
        body: Any = json.loads(exc.value.read())
        assert "not run-time settable" in body["error"]["message"]


def test_a_state_directory_in_use_is_refused(tmp_path: Path) -> None:
    with ComputeSim(SimConfig(state_dir=tmp_path / "state", block_devices=False)):
        with pytest.raises(RuntimeError, match="in use by process"):
            ComputeSim(SimConfig(state_dir=tmp_path / "state")).start()
        # Temporary state directories of live simulators are never swept.
        with ComputeSim(SimConfig(block_devices=False)) as other:
            assert other.state_dir.exists()
    with ComputeSim(SimConfig(state_dir=tmp_path / "state", block_devices=False)):
        pass


def test_an_image_held_over_http_refuses_disks_from_it_until_released(image: Path) -> None:
    """``POST /_sim/images/hold`` and ``/_sim/images/release``, seen through the real client: while held in
    the zone, ``disks.insert`` is a 400 ``resourceNotReady`` naming the image, as GCE answers it."""
    with ComputeSim(SimConfig(latency="fast", block_devices=False)) as sim:
        url = sim.url
        admin(url, "POST", "/_sim/images", {"project": PROJECT, "name": "img", "file": str(image)})
        held = admin(url, "POST", "/_sim/images/hold", {"project": PROJECT, "name": "img", "zones": [ZONE]})
        assert held["status"] == "READY"  # held in one zone only: the global image is READY
        kw = client_kwargs(sim.endpoint)
        disks, ops = compute_v1.DisksClient(**kw), compute_v1.ZoneOperationsClient(**kw)
        image_link = f"projects/{PROJECT}/global/images/img"
        with pytest.raises(gexc.BadRequest) as refused:
            insert_disk(disks, "d1", image_link)
        assert [e["reason"] for e in refused.value.errors] == ["resourceNotReady"]
        assert f"The resource '{image_link}' is not ready" in str(refused.value)
        released = admin(url, "POST", "/_sim/images/release", {"project": PROJECT, "name": "img"})
        assert released["status"] == "READY"
        done = wait_operation(ops, insert_disk(disks, "d1", image_link), project=PROJECT, zone=ZONE)
        assert not done.error.errors
        assert [d["status"] for d in admin(url, "GET", "/_sim/inventory")["disks"]] == ["READY"]
