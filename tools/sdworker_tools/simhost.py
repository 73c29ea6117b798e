"""Many node agents in one process over a SIMULATED mount layer, for the 1000-node benchmark.

Why: 1000 agent processes (about 0.7 CPU s of imports and 78 MB each) do not fit a 2-core VM, nor do 1000
loop devices. Here a few worker processes each run many agents as asyncio tasks through the agent's own
entry point (``sdworker_agent.__main__.serve``: its own node name, kubeconfig with a token bound to its
DaemonSet pod, kube client and health endpoint), and only the host layer below the agent's decisions,
``sdworker_agent.system``'s device and mount functions, is replaced. Everything above the mount call
(watching RuntimeDisks, planning, status patches, manifest verification, prefetch, the Node's labels and
taint) is the agent's code unchanged. The replacement behaves like the real host as far as the agent can
tell:

- ``find_device``: the by-id device of ``deviceName`` exists once the simulator's instance state has the
  disk attached to that node's VM (``/_sim/inventory``, re-read at most every ``REFRESH_S``; the real one
  waits for udev's link), not while the attach is pending;
- ``check_filesystem``: a disk made from an image holds its filesystem; a blank one has none
  (``UnknownFilesystem``, as ``blkid`` reports it);
- ``mount_readonly``: a real read-only bind mount of the one runtime image mounted (for real, from the
  build's ``disk.raw``) by the benchmark, so verification and prefetch read real files; the node's own
  mount table (``read_mountinfo``) records it with the simulated device's number;
- ``unmount``: the bind mount taken away, and the node's table entry with it.

The simulator runs with ``block_devices=False`` (API only, as the chaos tests run it): no loop device per
disk. Which node a call is for comes from a context variable set in each agent's task (``asyncio`` copies
it into tasks and ``to_thread`` workers). Run by ``HostedAgents`` (the benchmark); not for production.

    python -m sdworker_tools.simhost --sim URL --image-mount DIR --spool DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdworker_agent import __main__ as agent_main
from sdworker_agent import mountinfo, system
from sdworker_tools import procs
from sdworker_tools.computesim.testing import admin

REFRESH_S = 0.5  # how stale the simulator's instance state may be (udev's link appears within ms)
SIM_MAJOR = 259  # the block-extended major Linux gives NVMe namespaces and persistent disks alike
NODE: contextvars.ContextVar[str] = contextvars.ContextVar("simhost_node")


@dataclass
class SimState:
    """The simulator's instances and disks, re-read at most every ``REFRESH_S`` (shared by all agents)."""

    sim_url: str
    refresh_s: float = REFRESH_S
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _at: float = -1e9
    _attached: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, deviceName) -> disk link
    _from_image: dict[str, bool] = field(default_factory=dict)  # disk link -> made from an image

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.refresh_s:
                return
            inv = admin(self.sim_url, "GET", "/_sim/inventory")
            self._attached = {
                (str(inst["name"]), str(a["deviceName"])): str(a["disk"])
                for inst in inv.get("instances") or []
                for a in (inst.get("_sim") or {}).get("attachments") or []
                if not a.get("pending")
            }
            self._from_image = {
                str(d["selfLink"]): bool(d.get("sourceImage")) for d in inv.get("disks") or []
            }
            self._at = time.monotonic()

    def attached(self, node: str, device_name: str) -> str | None:
        """The disk attached to ``node``'s VM as ``device_name``, or None."""
        self._refresh()
        return self._attached.get((node, device_name))

    def from_image(self, disk: str) -> bool:
        self._refresh()
        return self._from_image.get(disk, False)


@dataclass
class SimulatedSystem:
    """The replacement for ``sdworker_agent.system``'s host functions, one mount table per node."""

    state: SimState
    image_mount: str  # the runtime image, mounted read-only for real once
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _minors: dict[tuple[str, str], int] = field(default_factory=dict)
    _tables: dict[str, list[mountinfo.Mount]] = field(default_factory=dict)
    _next_id: int = 1000

    def install(self) -> None:
        """Route the agent's host calls here (``wait_for_device`` finds ``find_device`` in the module)."""
        system.find_device = self.find_device
        system.check_filesystem = self.check_filesystem
        system.read_mountinfo = self.read_mountinfo
        system.mount_readonly = self.mount_readonly
        system.unmount = self.unmount

    def _minor(self, node: str, device_name: str) -> int:
        with self._lock:
            return self._minors.setdefault((node, device_name), len(self._minors))

    def find_device(self, dev_root: str, device_name: str) -> system.Device | None:
        node = NODE.get()
        if self.state.attached(node, device_name) is None:
            return None
        minor = self._minor(node, device_name)
        return system.Device(
            system.by_id_path(dev_root, device_name), f"/dev/simdisk{minor}", SIM_MAJOR, minor
        )

    def check_filesystem(self, device: system.Device, *, full_check: bool = False) -> None:
        del full_check
        node = NODE.get()
        name = device.by_id.rsplit("/", 1)[-1].removeprefix(system.BY_ID_PREFIX)
        disk = self.state.attached(node, name)
        if disk is None or not self.state.from_image(disk):
            raise system.HostError(
                "UnknownFilesystem",
                f"expected an {system.EXPECTED_FSTYPE} filesystem on {device.path} ({device.by_id}), "
                "found no recognizable filesystem",
            )

    def read_mountinfo(self, path: str = "/proc/self/mountinfo") -> tuple[mountinfo.Mount, ...]:
        del path
        with self._lock:
            return tuple(self._tables.get(NODE.get(), ()))

    def mount_readonly(self, device: system.Device, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        result = procs.run(["mount", "--bind", "-o", "ro", self.image_mount, target], check=False)
        if result.returncode != 0:
            raise system.HostError(
                "MountFailed",
                f"expected to mount {device.path} ({device.by_id}) read-only at {target}, "
                f"mount exited {result.returncode}: {result.stderr.strip()}",
            )
        with self._lock:
            self._next_id += 1
            entry = mountinfo.Mount(
                mount_id=self._next_id,
                parent_id=1,
                major=device.major,
                minor=device.minor,
                root="/",
                mount_point=target,
                options=("ro", "relatime"),
                optional=(),
                fstype=system.EXPECTED_FSTYPE,
                source=device.path,
                super_options=("ro", "noload"),
            )
            self._tables.setdefault(NODE.get(), []).append(entry)

    def unmount(self, target: str) -> None:
        result = procs.run(["umount", target], check=False)
        if result.returncode != 0:
            raise system.HostError("UnmountFailed", f"umount {target} exited {result.returncode}")
        with self._lock:
            table = self._tables.get(NODE.get(), [])
            mine = [m for m in table if m.mount_point == target]
            if mine:
                table.remove(mine[-1])


def agent_argv(
    node: str, kubeconfig: Path, dev_root: Path, host_root: Path, port: int, resync: float
) -> list[str]:
    """The agent's command line, as the DaemonSet's container passes it (the same for both ways to run it)."""
    return [
        f"--node-name={node}",
        f"--kubeconfig={kubeconfig}",
        f"--dev-root={dev_root}",
        f"--host-root={host_root}",
        f"--health-address=127.0.0.1:{port}",
        f"--resync-seconds={resync:g}",
    ]


async def _run_agent(node: str, argv: list[str]) -> None:
    """One node's agent; its failure is logged and leaves that node without an agent (as a crashed pod
    would, minus the restart), not the other agents of this process."""
    NODE.set(node)
    try:
        await agent_main.serve(agent_main.parse_args(argv))
    except asyncio.CancelledError:
        raise
    except Exception:
        logging.getLogger("simhost").exception("the agent of %s exited", node)


async def _serve(spool: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: dict[str, asyncio.Task[None]] = {}
    while not stop.is_set():
        for spec_file in sorted(spool.glob("*.json")):
            spec = json.loads(spec_file.read_text())
            node = str(spec["node"])
            if node not in tasks:
                tasks[node] = asyncio.create_task(_run_agent(node, list(spec["argv"])), name=f"agent-{node}")
        # Each agent's serve() takes SIGTERM for itself; the host takes it back for all of them.
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.2)
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", required=True, help="the compute simulator's URL (its /_sim admin API)")
    p.add_argument("--image-mount", required=True, help="the runtime image, mounted read-only")
    p.add_argument("--spool", required=True, type=Path, help="one <node>.json per agent to run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kubernetes", "aiohttp", "sdworker_agent"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    SimulatedSystem(SimState(args.sim), args.image_mount).install()
    asyncio.run(_serve(args.spool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
