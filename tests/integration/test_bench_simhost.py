"""The 1000-node benchmark's simulated host layer behaves like the real one where the agent can tell.

``sdworker_tools.simhost`` replaces ``sdworker_agent.system``'s device and mount functions for agents that
run as tasks (no loop device per disk): these checks hold it to the real layer's contract, against the
real compute simulator (API only, ``block_devices=False``): no device before the attach completes, the
device after it; a blank disk fails the filesystem check as ``blkid`` finds nothing; the mount is read-only
and shows the runtime's files, is in the node's own mount table with the device's number, and is gone
after the unmount; another node's table is its own. Root is needed for the (real) bind mount.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import compute_v1

from sdworker_agent import mountinfo, system
from sdworker_tools.computesim import ComputeSim, SimConfig, client_kwargs
from sdworker_tools.simhost import NODE, SIM_MAJOR, SimState, SimulatedSystem

PROJECT = "sim-project"
ZONE = "us-central1-a"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the simulated mount is a real bind mount (root)")


@pytest.fixture
def sim() -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="instant", seed=3, block_devices=False)) as s:
        s.register_image("sd-runtime-v1", None, project=PROJECT, family="sd-runtime", disk_size_gb=1)
        for name in ("gpu-node-a", "gpu-node-b"):
            s.create_instance(name, zone=ZONE, project=PROJECT)
        yield s


def _disk_attached(sim: ComputeSim, disk: str, device_name: str, *, image: bool) -> None:
    kw = client_kwargs(sim.endpoint)
    ops = compute_v1.ZoneOperationsClient(**kw)
    source = f"projects/{PROJECT}/global/images/sd-runtime-v1" if image else None
    op = compute_v1.DisksClient(**kw).insert_unary(
        request=compute_v1.InsertDiskRequest(
            project=PROJECT,
            zone=ZONE,
            request_id=str(uuid.uuid4()),
            disk_resource=compute_v1.Disk(name=disk, size_gb=1, source_image=source),
        )
    )
    ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    op = compute_v1.InstancesClient(**kw).attach_disk_unary(
        request=compute_v1.AttachDiskInstanceRequest(
            project=PROJECT,
            zone=ZONE,
            instance="gpu-node-a",
            request_id=str(uuid.uuid4()),
            attached_disk_resource=compute_v1.AttachedDisk(
                source=f"projects/{PROJECT}/zones/{ZONE}/disks/{disk}", device_name=device_name
            ),
        )
    )
    ops.wait(project=PROJECT, zone=ZONE, operation=op.name)


def test_the_simulated_layer_keeps_the_real_layers_contract(
    sim: ComputeSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "image"
    (image / "models").mkdir(parents=True)
    (image / "models" / "model.bin").write_bytes(b"weights")
    for name in ("find_device", "check_filesystem", "read_mountinfo", "mount_readonly", "unmount"):
        monkeypatch.setattr(system, name, getattr(system, name))  # restored after the test
    SimulatedSystem(SimState(sim.endpoint, refresh_s=0.0), str(image)).install()
    dev_root = str(tmp_path / "dev")
    target = str(tmp_path / "host" / "var" / "lib" / "sdworker" / "rt")
    NODE.set("gpu-node-a")

    assert system.find_device(dev_root, "rt") is None  # not attached yet
    with pytest.raises(system.HostError, match="DeviceNotFound"):
        system.wait_for_device(dev_root, "rt", timeout=0.3, interval=0.1)  # the agent's own wait
    _disk_attached(sim, "d-rt", "rt", image=True)
    device = system.wait_for_device(dev_root, "rt", timeout=5, interval=0.1)
    assert device.by_id == system.by_id_path(dev_root, "rt")
    assert device.major == SIM_MAJOR

    system.check_filesystem(device)
    _disk_attached(sim, "d-blank", "blank", image=False)
    blank = system.find_device(dev_root, "blank")
    assert blank is not None
    assert blank.number != device.number
    with pytest.raises(system.HostError, match="UnknownFilesystem"):
        system.check_filesystem(blank)

    system.mount_readonly(device, target)
    try:
        assert (Path(target) / "models" / "model.bin").read_bytes() == b"weights"
        with pytest.raises(OSError, match="Read-only file system") as err:
            (Path(target) / "new").write_text("x")
        assert err.value.errno == errno.EROFS
        (here,) = mountinfo.mounts_at(system.read_mountinfo(), target)
        assert here.device == device.number
        assert here.read_only
        NODE.set("gpu-node-b")
        assert system.read_mountinfo() == ()  # another node's host
        NODE.set("gpu-node-a")
    finally:
        system.unmount(target)
    assert mountinfo.mounts_at(system.read_mountinfo(), target) == ()
    assert not (Path(target) / "models").exists()
    real = mountinfo.parse(Path("/proc/self/mountinfo").read_bytes())
    assert not mountinfo.mounts_at(real, target)
