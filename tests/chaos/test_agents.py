"""Node agents killed mid-mount and mid-unmount, and a node rebooted under its agent; then the invariants.

The real operator (GCE provider against the simulator) provisions; real agent processes, with their production
identity (a token bound to their pod, the RBAC and admission policy of ``daemonset/manifests``), mount the
simulator's loop devices. A kill is ``SIGKILL`` at the moment the agent is inside the step (its mount appeared
but the RuntimeDisk still says Mounting; the RuntimeDisk is being deleted but still carries the agent's
finalizer); a reboot takes every mount away from under the agent while the disk stays attached.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sdworker.api import constants as c
from sdworker_agent import mountinfo
from sdworker_tools.computesim import SimConfig
from sdworker_tools.wait import wait_for
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.world import GPU_TAINT, STARTUP_TAINT, World
from tests.integration.test_agent_support import AgentProcess, RuntimeImage, build_runtime_image, mounts_under

POLICY_FILES = ["rbac.yaml", "admission-policy.yaml"]


@pytest.fixture(scope="module")
def slow_image(tmp_path_factory: pytest.TempPathFactory) -> RuntimeImage:
    """A runtime whose 64 MiB model keeps ``--verify=full`` busy between the mount and Ready."""
    return build_runtime_image(
        tmp_path_factory.mktemp("chaos-agents"), "sd-chaos-agents", model_bytes=64 << 20, pack=True
    )


def rd_of(w: World, node: str) -> dict[str, Any] | None:
    return next((d for d in w.runtimedisks() if d["spec"]["nodeName"] == node), None)


def mounts_at(path: Path) -> tuple[mountinfo.Mount, ...]:
    return mountinfo.mounts_at(mountinfo.parse(Path("/proc/self/mountinfo").read_bytes()), str(path))


def test_agents_killed_mid_mount_and_mid_unmount_and_a_node_rebooted(
    make_world: MakeWorld, campaign: Campaign, slow_image: RuntimeImage
) -> None:
    started = time.monotonic()
    w = make_world(SimConfig(latency="fast", seed=11), seed=11)
    h = w.harness
    w.publish(slow_image.path.parent)  # the family's newest image: the SDWorker runs this one
    h.install(POLICY_FILES)
    a, b = w.add_nodes([f"{w.label}-a", f"{w.label}-b"], taints=(STARTUP_TAINT, GPU_TAINT))
    agents: dict[str, AgentProcess] = {
        n: h.start_agent(n, h.agent_credentials(n), "--verify=full") for n in (a, b)
    }
    w.create_sdworker("agents", replicas=2)
    rds = {n: wait_for(functools.partial(rd_of, w, n), timeout=60, what=f"{n}'s RuntimeDisk") for n in (a, b)}
    target = {n: agents[n].host_root / rds[n]["spec"]["mountPath"].lstrip("/") for n in (a, b)}

    # 1. Node a's agent killed between its mount and its report (frozen first, so it cannot finish meanwhile).
    wait_for(lambda: mounts_at(target[a]), timeout=120, interval=0.002, what="a's mount", describe=w.describe)
    proc = agents[a].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    mid_mount = ((rd_of(w, a) or {}).get("status") or {}).get("phase") == "Mounting"
    agents[a].kill()
    w.faults["agent kill -9 mid-mount" if mid_mount else "agent kill -9 after mount"] += 1
    agents[a].start()

    # 2. Node b rebooted once Ready: the agent dies, its mounts vanish, the disk stays attached.
    wait_for(lambda: w.served("Ready"), timeout=120, what="both nodes Ready", describe=w.describe)
    agents[b].kill()
    for m in sorted(mounts_under(agents[b].host_root), key=lambda m: -m.mount_id):
        subprocess.run(["umount", m.mount_point], check=True)
    w.faults["node reboot (mounts gone, disk attached)"] += 1
    agents[b].start()
    wait_for(lambda: len(mounts_at(target[b])) == 1, timeout=120, what="b remounted", describe=w.describe)
    ready = settle(w, phase="Ready", timeout=120)
    assert [len(mounts_at(target[n])) for n in (a, b)] == [1, 1]

    # 3. The SDWorker deleted: node a's agent, frozen meanwhile, is let go into its unmount and killed the
    #    moment its mount is gone (or its RuntimeDisk, if it was quicker than the poll).
    proc = agents[a].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    w.delete_sdworker("agents")

    def unmounting() -> bool:
        rd = rd_of(w, a)
        meta = rd["metadata"] if rd else {}
        return bool(meta.get("deletionTimestamp")) and c.FINALIZER_UNMOUNT in (meta.get("finalizers") or [])

    wait_for(unmounting, timeout=120, what="a's RuntimeDisk deleting", describe=w.describe)
    os.kill(proc.pid, signal.SIGCONT)
    wait_for(
        lambda: not mounts_at(target[a]) or rd_of(w, a) is None,
        timeout=120,
        interval=0.002,
        what="a's agent unmounting",
        describe=w.describe,
    )
    mid_unmount = unmounting()
    agents[a].kill()
    w.faults["agent kill -9 mid-unmount" if mid_unmount else "agent kill -9 after unmount"] += 1
    agents[a].start()
    gone = settle(w, phase=None, timeout=120)
    assert mounts_under(agents[a].host_root) == mounts_under(agents[b].host_root) == []

    w.remove_nodes([a, b])
    end = settle(w, phase=None, host_roots=[ag.host_root for ag in agents.values()], final=True, timeout=120)
    results = merge(ready, gone, end)
    campaign.record(
        Row(
            "agents: kill -9 mid-mount, node reboot, kill -9 mid-unmount",
            w.all_faults(),
            results,
            time.monotonic() - started,
        )
    )
    assert violations(results) == []
