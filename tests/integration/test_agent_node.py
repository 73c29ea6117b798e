"""The node agent on real loop devices, a real control plane and its production RBAC: mount, verify,
prefetch, open the node; survive a SIGKILL mid-mount; refuse bad disks; unmount on deletion.

Each agent is a process started the way the DaemonSet starts it, authenticated with a ServiceAccount token
bound to its pod on its node (so the RBAC and the admission policy from ``daemonset/manifests`` are what
let it work). The test plays the operator with the operator's own parts (``test_agent_support.Harness``): it
publishes the image, creates the disk through the compute simulator, attaches it (a loop device appears at
the node's ``disk/by-id``), creates the RuntimeDisk and sets ``Attached``.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import RuntimeMode
from sdworker_agent import mountinfo, system
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.wait import wait_for
from tests.integration.test_agent_support import (
    GPU_TAINT,
    MODEL,
    Harness,
    RuntimeImage,
    build_runtime_image,
    corrupt_group_descriptors,
    mounts_under,
)

POLICY_FILES = ["rbac.yaml", "admission-policy.yaml"]
Json = dict[str, Any]


@pytest.fixture(scope="module")
def sim() -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="fast")) as s:
        yield s


@pytest.fixture
def harness(
    cluster: LocalCluster,
    api: client.ApiClient,
    crds: list[str],
    sim: ComputeSim,
    namespace: str,
    tmp_path: Path,
) -> Iterator[Harness]:
    h = Harness(cluster, api, sim, namespace, f"h{uuid.uuid4().hex[:6]}", tmp_path)
    try:
        yield h
    finally:
        h.close()


def target_of(agent_host_root: Path, image: RuntimeImage) -> Path:
    return agent_host_root / naming.mount_path(image.runtime_id).lstrip("/")


def mounts_at(path: Path) -> tuple[mountinfo.Mount, ...]:
    return mountinfo.mounts_at(mountinfo.parse(Path("/proc/self/mountinfo").read_bytes()), str(path))


def sd_pod(namespace: str, node: str, runtime_id: str) -> Json:
    """A pod shaped like the operator's SD replica: a GPU, no toleration of the startup taint."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"webui-{node}"[:63], "namespace": namespace},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": GPU_TAINT.key, "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "preference": {
                                "matchExpressions": [
                                    {
                                        "key": naming.runtime_ready_label(runtime_id),
                                        "operator": "In",
                                        "values": ["ready"],
                                    }
                                ]
                            },
                        }
                    ]
                }
            },
            "containers": [
                {
                    "name": "webui",
                    "image": "registry.example/sd-base:cuda12-py3.10",
                    "resources": {"limits": {c.GPU_RESOURCE: "1"}},
                    "volumeMounts": [{"name": "runtime", "mountPath": "/runtime", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "runtime", "hostPath": {"path": naming.mount_path(runtime_id)}}],
        },
    }


def pod_scheduling(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str, str]:
    """``(node, phase, PodScheduled message)`` of a pod."""
    pod = core.read_namespaced_pod(name, namespace)
    scheduled = next((cond for cond in pod.status.conditions or [] if cond.type == "PodScheduled"), None)
    message = scheduled.message if scheduled is not None and scheduled.message else ""
    return pod.spec.node_name or "", pod.status.phase or "", message


def unschedulable(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str, str] | None:
    state = pod_scheduling(core, namespace, name)
    return state if state[2] else None


def running(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str, str] | None:
    state = pod_scheduling(core, namespace, name)
    return state if state[1] == "Running" else None


def test_two_agents_mount_verify_prefetch_and_open_their_nodes(harness: Harness, unique: str) -> None:
    h = harness
    nodes = [h.add_node(f"{unique}-a"), h.add_node(f"{unique}-b")]
    h.install(POLICY_FILES)
    image = build_runtime_image(h.workdir, f"rt-{h.suffix}", model_bytes=16 << 20, pack=True)
    h.register(image)
    pods = {}
    for node in nodes:
        pod = h.core.create_namespaced_pod(h.namespace, sd_pod(h.namespace, node, image.runtime_id))
        pods[node] = pod.metadata.name
    for node in nodes:
        _, phase, message = wait_for(
            functools.partial(unschedulable, h.core, h.namespace, pods[node]),
            timeout=30,
            what=f"the scheduler to report why the SD pod for {node} is Pending",
        )
        # The only taint it does not tolerate is the startup taint (it tolerates nvidia.com/gpu).
        assert phase == "Pending"
        assert "untolerated taint" in message

    # The real DaemonSet lands on both tainted GPU nodes; each agent runs as its pod there.
    h.install_daemonset()
    ds_pods = {
        node: wait_for(
            functools.partial(h.daemonset_pod, node), timeout=60, what=f"the DaemonSet's pod to run on {node}"
        )
        for node in nodes
    }
    # SharedReadOnly: one disk, attached READ_ONLY to both nodes (read-only loop devices).
    disks = {}
    for node in nodes:
        h.attach(node, image, mode=RuntimeMode.SHARED_READ_ONLY)
        disks[node] = h.create_runtimedisk(node, image, mode=RuntimeMode.SHARED_READ_ONLY)
    agents = {node: h.start_agent(node, h.agent_credentials(node, ds_pods[node])) for node in nodes}

    for node in nodes:
        wait_for(
            functools.partial(h.phase_is, disks[node], "Ready"),
            timeout=90,
            what=f"{disks[node]} Ready",
            describe=h.describe,
        )
    for node in nodes:
        rd = h.runtimedisk(disks[node])
        assert rd is not None
        status = rd["status"]
        device = system.find_device(str(h.dev_root(node)), naming.device_name(image.runtime_id))
        assert device is not None
        assert status["devicePath"] == device.path
        assert device.path.startswith("/dev/loop")
        assert Path(f"/sys/block/{Path(device.path).name}/ro").read_text().strip() == "1"
        assert status["reason"] == "Ready"
        timings = status["timings"]
        assert timings["attached"] <= timings["mounted"] <= timings["verified"] <= timings["prefetched"]
        assert set(timings["durationsSeconds"]) >= {"fsck", "mount", "verify", "prefetch"}
        prefetch = status["prefetch"]
        assert prefetch["bytes"] == image.model_bytes  # the model; the missing .ckpt is skipped
        assert prefetch["throughputMBps"] > 0
        assert prefetch["seconds"] >= 0
        assert "prefetch skipped models/not-there.ckpt (not found)" in status["message"]
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        assert ready["status"] == "True"

        # Exactly one read-only ext4 mount of the node's own device, where SD pods look for it.
        here = mounts_at(target_of(agents[node].host_root, image))
        assert len(here) == 1
        assert (here[0].fstype, here[0].read_only, here[0].device) == ("ext4", True, device.number)
        assert (target_of(agents[node].host_root, image) / MODEL).stat().st_size == image.model_bytes

    for node in nodes:
        wait_for(
            functools.partial(h.untainted, node), timeout=30, what=f"{node} untainted", describe=h.describe
        )
        assert h.labels(node)[naming.runtime_ready_label(image.runtime_id)] == "ready"
        assert any(t["key"] == GPU_TAINT.key for t in h.node(node)["spec"]["taints"])  # others' taints stay
    for node in nodes:
        where, _, _ = wait_for(
            functools.partial(running, h.core, h.namespace, pods[node]),
            timeout=60,
            what=f"the SD pod to run on {node} once the taint is gone",
        )
        assert where == node

    agent = agents[nodes[0]]
    assert agent.http("/readyz")[0] == 200
    assert agent.metric("sdworker_agent_mount_seconds_count") == 1
    assert agent.metric("sdworker_agent_prefetch_seconds_count") == 1
    assert agent.metric("sdworker_agent_prefetch_bytes_total") == image.model_bytes
    wait_for(lambda: agent.metric("sdworker_agent_node_gated") == 0, timeout=30, what="node_gated 0")
    assert agent.metric("sdworker_agent_mounted_runtimes") == 1
    assert agent.metric("sdworker_agent_serving_runtimes") == 1
    assert (agent.metric("sdworker_agent_prefetch_throughput_mbps", f'runtime="{image.runtime_id}"') or 0) > 0

    events = h.core.list_namespaced_event("default", field_selector=f"involvedObject.name={disks[nodes[0]]}")
    assert "RuntimeReady" in {e.reason for e in events.items}


def test_killed_mid_mount_it_resumes_without_a_second_mount_and_unmounts_on_delete(
    harness: Harness, unique: str
) -> None:
    h = harness
    node = h.add_node(f"{unique}-n")
    h.install(POLICY_FILES)
    # A full re-hash of a 64 MiB model keeps the agent busy between its mount and Ready.
    image = build_runtime_image(h.workdir, f"rt-{h.suffix}", model_bytes=64 << 20, pack=True)
    h.register(image)
    h.attach(node, image)
    disk = h.create_runtimedisk(node, image)
    kubeconfig = h.agent_credentials(node)
    agent = h.start_agent(node, kubeconfig, "--verify=full")
    target = target_of(agent.host_root, image)

    # Freeze the agent the moment its mount appears (before it can report it), then SIGKILL it.
    first = wait_for(
        lambda: mounts_at(target), timeout=60, interval=0.002, what="the agent's mount", describe=h.describe
    )
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGSTOP)
    assert h.phase(disk) == "Mounting", "the agent finished before it could be stopped mid-mount"
    agent.kill()
    assert len(mounts_at(target)) == 1
    assert h.tainted(node)

    agent.start()
    wait_for(
        lambda: h.phase(disk) == "Ready",
        timeout=90,
        what=f"{disk} Ready after the restart",
        describe=h.describe,
    )
    after = mounts_at(target)
    assert [m.mount_id for m in after] == [first[0].mount_id]  # the same mount, adopted: no second one
    assert agent.metric("sdworker_agent_mount_seconds_count") == 0  # the new process mounted nothing
    assert "found already mounted" in agent.log_tail(200)
    wait_for(lambda: not h.tainted(node), timeout=30, what=f"{node} untainted", describe=h.describe)
    label = naming.runtime_ready_label(image.runtime_id)
    assert h.labels(node)[label] == "ready"

    # Deletion: the agent takes the label off, unmounts and releases its finalizer; the operator's stays.
    h.custom.delete_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, disk)
    wait_for(
        lambda: (
            ((h.runtimedisk(disk) or {}).get("metadata") or {}).get("finalizers") == [c.FINALIZER_CLOUD_DISK]
        ),
        timeout=60,
        what=f"the agent to release {c.FINALIZER_UNMOUNT}",
        describe=h.describe,
    )
    assert mounts_under(agent.host_root) == []
    assert not target.exists()
    assert label not in h.labels(node)
    assert not h.tainted(node)  # the taint never comes back


@pytest.mark.parametrize("fault", ["digest", "corrupt", "no-device"])
def test_a_bad_disk_fails_its_runtimedisk_and_keeps_the_node_tainted(
    harness: Harness, unique: str, fault: str
) -> None:
    h = harness
    node = h.add_node(f"{unique}-n")
    h.install(POLICY_FILES)
    image = build_runtime_image(h.workdir, f"rt-{h.suffix}", model_bytes=1 << 20, pack=True)
    digest = image.digest
    if fault == "digest":
        digest = build_runtime_image(h.workdir, f"other-{h.suffix}", model_bytes=1 << 20).digest
    h.register(image)
    if fault != "no-device":
        h.attach(node, image)
    if fault == "corrupt":  # the disk goes bad on the node: its image, and so its digest, are sound
        device = system.find_device(str(h.dev_root(node)), naming.device_name(image.runtime_id))
        assert device is not None
        corrupt_group_descriptors(Path(device.path))
    disk = h.create_runtimedisk(node, image, digest=digest)
    agent = h.start_agent(node, h.agent_credentials(node), "--device-timeout=3")

    wait_for(lambda: h.phase(disk) == "Failed", timeout=60, what=f"{disk} Failed", describe=h.describe)
    rd = h.runtimedisk(disk)
    assert rd is not None
    status = rd["status"]
    message = status["message"]
    by_id = f"{h.dev_root(node)}/disk/by-id/google-{naming.device_name(image.runtime_id)}"
    if fault == "digest":
        assert status["reason"] == "DigestMismatch"
        assert f"expected manifest digest {digest}" in message
        assert f"found {image.digest} in /.sdworker/manifest.json" in message
    elif fault == "corrupt":
        assert status["reason"] == "CorruptFilesystem"
        assert "expected a clean ext4 filesystem" in message
        assert "found errors: e2fsck -n" in message
    else:
        assert status["reason"] == "DeviceNotFound"
        assert f"expected the attached disk at {by_id}" in message
        assert "found nothing there after 3s" in message
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", status["reason"])

    # A later pass leaves it that way: still tainted, unlabelled, nothing mounted.
    wait_for(
        lambda: (
            agent.metric("sdworker_agent_runtimedisks", 'phase="Failed"') == 1
            and agent.metric("sdworker_agent_node_gated") == 1
        ),
        timeout=30,
        what="a reconcile pass after the failure",
    )
    assert h.phase(disk) == "Failed"
    assert h.tainted(node)
    assert naming.runtime_ready_label(image.runtime_id) not in h.labels(node)
    assert mounts_under(agent.host_root) == []
    assert agent.metric("sdworker_agent_failures_total", f'reason="{status["reason"]}"') == 1
    events = h.core.list_namespaced_event("default", field_selector=f"involvedObject.name={disk}")
    assert [e.type for e in events.items if e.reason == "RuntimeFailed"] == ["Warning"]


def test_the_agent_repairs_its_node_a_lost_mount_returns_and_a_stray_one_goes(
    harness: Harness, unique: str
) -> None:
    h = harness
    node = h.add_node(f"{unique}-n")
    h.install(POLICY_FILES)
    image = build_runtime_image(h.workdir, f"rt-{h.suffix}", model_bytes=1 << 20, pack=True)
    h.register(image)
    h.attach(node, image)
    disk = h.create_runtimedisk(node, image)
    agent = h.start_agent(node, h.agent_credentials(node))
    wait_for(
        functools.partial(h.phase_is, disk, "Ready"), timeout=60, what=f"{disk} Ready", describe=h.describe
    )
    wait_for(functools.partial(h.untainted, node), timeout=30, what=f"{node} untainted", describe=h.describe)
    target = target_of(agent.host_root, image)
    (first,) = mounts_at(target)

    # As after a reboot: the runtime is gone from under the Ready RuntimeDisk. The next pass mounts it again.
    subprocess.run(["umount", str(target)], check=True)
    # And someone left a mount in the agent's mount root that no RuntimeDisk claims.
    stray = agent.host_root / "mnt" / "sdworker" / "stray"
    stray.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "stray", str(stray)], check=True)

    wait_for(
        lambda: len(mounts_at(target)) == 1 and not mounts_at(stray),
        timeout=60,
        what="the agent to remount the runtime and unmount the stray mount",
        describe=h.describe,
    )
    (again,) = mounts_at(target)
    assert again.device == first.device
    assert agent.metric("sdworker_agent_mount_seconds_count") == 2  # mounted anew (mount ids are reused)
    wait_for(functools.partial(h.phase_is, disk, "Ready"), timeout=60, what=f"{disk} Ready again")
    wait_for(
        lambda: h.labels(node).get(naming.runtime_ready_label(image.runtime_id)) == "ready",
        timeout=30,
        what="the runtime label back",
    )
    assert agent.metric("sdworker_agent_unmounts_total", 'reason="Orphan"') == 1
    assert not h.tainted(node)
