"""Helpers for tests that drive the simulator: small ext4 images, publishing builds, operation waits, loops.

Shared by the simulator's own tests and by operator/agent tests that need a disk image with
known files, so every test builds its images the same way (``mkfs.ext4 -d``: no mount, no root
needed for the build itself).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdworker_images import publish
from sdworker_tools import procs

if TYPE_CHECKING:
    from sdworker_tools.computesim.server import ComputeSim

DONE = "DONE"


def loop_devices_usable() -> bool:
    """Root and a loop-control device: what attach (``losetup``) and ``mount`` need."""
    return os.geteuid() == 0 and Path("/dev/loop-control").exists()


def make_ext4_image(
    path: Path, files: Mapping[str, bytes | str], *, size_mb: int = 8, label: str = ""
) -> Path:
    """An ext4 filesystem image at ``path`` holding ``files`` (relative path -> content)."""
    tree = path.with_name(path.name + ".tree")
    for rel, content in files.items():
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    with path.open("wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    argv = ["mkfs.ext4", "-q", "-F", "-d", str(tree)]
    if label:
        argv += ["-L", label]
    procs.run([*argv, str(path)])
    procs.run(["rm", "-rf", str(tree)])
    return path


def publish_build(
    sim: ComputeSim, build_dir: Path, *, project: str, family: str | None = None, name: str | None = None
) -> publish.PublishResult:
    """Publish a finished ``sdworker image build`` into the simulator with the real publisher.

    What ``sdworker image publish --upload-dir <sim state>/uploads --api-endpoint <sim>`` does: the image
    gets its labels and description from ``sdworker.image_meta``, never from a test.
    """
    return publish.publish(
        build_dir,
        project=project,
        uploader=publish.LocalDirUploader(sim.state_dir / "uploads"),
        images=publish.ComputeImageService(sim.endpoint),
        family=family,
        name=name,
        timeout=120,
    )


def losetup_list() -> dict[str, str]:
    """Every loop device on the machine -> its backing file (``losetup --list``)."""
    out = procs.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"]).stdout
    devices = {}
    for line in out.splitlines():
        name, _, back = line.strip().partition(" ")
        if name:
            devices[name] = back.strip()
    return devices


def wait_operation(
    ops_client: Any, operation: Any, *, project: str, zone: str | None = None, timeout: float = 60
) -> Any:
    """Call ``wait`` on a zone (or global) operation until it is DONE; return the final operation.

    ``ops_client`` is a ``ZoneOperationsClient`` (or ``GlobalOperationsClient`` when ``zone`` is
    None); ``wait`` may return before DONE at its own deadline, hence the loop.
    """
    deadline = time.monotonic() + timeout
    name = operation.name
    while True:
        if zone is None:
            operation = ops_client.wait(project=project, operation=name)
        else:
            operation = ops_client.wait(project=project, zone=zone, operation=name)
        if _status_name(operation.status) == DONE:
            return operation
        if time.monotonic() > deadline:
            raise TimeoutError(f"operation {name} not DONE after {timeout}s: {operation}")


def _status_name(status: Any) -> str:
    # compute_v1 messages expose enum fields as the nested Status enum (an int with a name).
    name = getattr(status, "name", None)
    return name if isinstance(name, str) else str(status)


def admin(url: str, verb: str, path: str, body: Mapping[str, Any] | None = None, timeout: float = 30) -> Any:
    """Call the simulator's admin API (``/_sim/...``) over HTTP; raises on a non-2xx answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url.rstrip("/") + path, data=data, method=verb, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
