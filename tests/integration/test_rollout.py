"""Rolling a runtime onto live nodes (issue 14): what the served runtime may and may not do.

- A host unmount does not see a pod's bind of the runtime: the kernel lets the agent's ``umount`` succeed
  while an SD pod still reads the filesystem (the pod runner binds ``hostPath`` volumes as runc does,
  ``HostToContainer`` as a slave bind). So "the unmount failed with EBUSY" can never be what protects a
  running pod; only the pods bound to a node can tell whether its runtime is in use.
- A failed image lookup never changes the runtime an SDWorker serves: the operator, restarted while the
  simulator's ``images.getFromFamily`` answers 503, keeps the Deployment's template, the status' runtime
  and the RuntimeDisks it had, and says Degraded until the cloud answers again.
- Acceptance: the demo's world (own control plane, simulator, agents, pod runner; 5 scripted GPU nodes,
  5 replicas on v1) gets v2 published into the followed family. It rolls, is rolled back mid-rollout,
  rolls again and is paused (the mix holds), then resumed; a sampler checks throughout that at least
  ``replicas - maxUnavailable`` pods are Ready, that no pod is bound where its runtime is not ready, and
  that no pod's runtime disk is detached under it. At the end only v2 disks exist, in the simulator's
  inventory and as RuntimeDisks.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import parse_sdworker
from sdworker.domain import render
from sdworker_agent import system
from sdworker_images import build
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, FaultRule, SimConfig
from sdworker_tools.computesim.testing import make_ext4_image, publish_build
from sdworker_tools.demo import FAMILY as DEMO_FAMILY
from sdworker_tools.demo import PROJECT as DEMO_PROJECT
from sdworker_tools.demo import SDWORKER, Demo
from sdworker_tools.demo_image import build_image, publish_image, standin_tree
from sdworker_tools.demo_report import pod_ready
from sdworker_tools.podrunner import PodRunner
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess
from tests.integration.image_support import build_example
from tests.unit.invalid_specs import valid_sdworker

Json = dict[str, Any]
PROJECT = "sdworker-test"
ZONE = "us-central1-a"
FAMILY = f"projects/{PROJECT}/global/images/family/sd-rollout"
V1 = f"projects/{PROJECT}/global/images/sd-rollout-v1"
PY = "/usr/bin/python3.10"  # the base image's interpreter (images/Dockerfile.base SDWORKER_PYTHON)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts and the pod runner need root")


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


# --- claim 3: the host's unmount does not protect a pod ---------------------------------------------------


@needs_root
def test_host_unmount_succeeds_while_a_pod_reads_the_runtime(
    cluster: LocalCluster, core: client.CoreV1Api, namespace: str, unique: str, tmp_path: Path
) -> None:
    node = f"ro-{unique}"[:40].rstrip("-")
    host_root = tmp_path / "host"
    host_root.mkdir()
    cluster.add_gpu_node(node)
    runner = PodRunner(
        cluster.kubeconfig,
        host_root=lambda n: host_root if n == node else None,
        backoff_initial=1.0,
        mount_retry_cap=1.0,
        poll_interval=0.2,
        log=lambda _line: None,
    )
    # The runtime volume and mount exactly as the operator renders them for an SD pod.
    rid = "sd-rollout-v1-00000001"
    template = render.pod_template("sd-webui", parse_sdworker(valid_sdworker("sd", namespace)).spec, rid)
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "runtime")
    mount = next(m for m in template["spec"]["containers"][0]["volumeMounts"] if m["name"] == "runtime")
    assert mount["mountPropagation"] == "HostToContainer"
    target = str(host_root / volume["hostPath"]["path"].lstrip("/"))

    image = make_ext4_image(tmp_path / "runtime.ext4", {"webui.txt": "runtime v1\n"})
    loop = procs.run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    st = os.stat(loop)
    device = system.Device(by_id=loop, path=loop, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))
    runner.start()
    try:
        system.mount_readonly(device, target)
        reader = (
            "import time\n"
            "while True:\n"
            "    print('read', open('/runtime/webui.txt').read().strip(), flush=True)\n"
            "    time.sleep(0.2)\n"
        )
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "reader", "labels": {c.LABEL_SDWORKER: "reader"}},
                "spec": {
                    "nodeName": node,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": "sdworker-base:test",
                            "command": [PY, "-c", reader],
                            "volumeMounts": [mount],
                        },
                    ],
                    "volumes": [volume],
                },
            },
        )
        wait_for(
            lambda: "read runtime v1" in runner.logs(namespace, "reader"),
            timeout=60,
            what="the pod to read its runtime",
            describe=lambda: runner.logs(namespace, "reader"),
        )

        # The agent's own unmount: it succeeds, though the pod holds the filesystem.
        system.unmount(target)
        assert not [m for m in system.read_mountinfo() if m.mount_point == target]
        seen = runner.logs(namespace, "reader").count("read runtime v1")
        wait_for(
            lambda: runner.logs(namespace, "reader").count("read runtime v1") > seen + 3,
            timeout=30,
            what="the pod to keep reading the unmounted runtime",
            describe=lambda: runner.logs(namespace, "reader")[-500:],
        )
        assert "Error" not in runner.logs(namespace, "reader")
    finally:
        core.delete_namespaced_pod("reader", namespace, grace_period_seconds=0)
        runner.stop()
        if any(m.mount_point == target for m in system.read_mountinfo()):
            system.unmount(target)
        procs.run(["losetup", "--detach", loop])
        core.delete_node(node)


# --- a failed lookup keeps the served runtime ------------------------------------------------------------


@pytest.fixture(scope="module")
def built_v1(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    return build_example(tmp_path_factory.mktemp("rollout-v1") / "out")


@pytest.fixture(scope="module")
def sim(built_v1: build.BuildResult) -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="fast", seed=14)) as s:
        publish_build(s, built_v1.out, project=PROJECT, family="sd-rollout", name="sd-rollout-v1")
        yield s


@pytest.fixture(scope="module")
def cloud_operator(
    cluster: LocalCluster, crds: list[str], sim: ComputeSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster,
        tmp_path_factory.mktemp("rollout-operator-logs"),
        extra_args=[
            "--cloud=gce",
            f"--compute-endpoint={sim.endpoint}",
            "--anonymous-credentials",
            "--cluster-name=rollout",
            "--resync-seconds=5",
        ],
    )
    op.start()
    yield op
    op.stop()


def _worker(api: client.ApiClient, namespace: str, name: str) -> Json:
    obj: Json = custom(api).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SDWORKER_PLURAL, name
    )
    return obj


def _condition(obj: Json, type_: str) -> Json:
    return next((x for x in (obj.get("status") or {}).get("conditions") or [] if x["type"] == type_), {})


def _template_runtime(apps: client.AppsV1Api, namespace: str, name: str) -> str | None:
    try:
        dep = apps.read_namespaced_deployment(naming.child_name(name), namespace)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    annotations = dep.spec.template.metadata.annotations or {}
    return str(annotations.get(c.ANNOTATION_RUNTIME_ID)) if c.ANNOTATION_RUNTIME_ID in annotations else None


def _runtimedisk_ids(api: client.ApiClient, node: str) -> set[str]:
    items = custom(api).list_cluster_custom_object(
        c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, label_selector=f"{c.LABEL_NODE}={node}"
    )["items"]
    return {i["spec"]["runtimeId"] for i in items}


def test_a_failed_lookup_keeps_the_served_runtime(
    api: client.ApiClient,
    apps: client.AppsV1Api,
    cluster: LocalCluster,
    sim: ComputeSim,
    cloud_operator: OperatorProcess,
    namespace: str,
    unique: str,
) -> None:
    rid = naming.runtime_id(V1)
    node = f"lk-{unique}"[:40].rstrip("-")
    selector = {"sdworker.test/rollout": unique[:63]}
    sim.create_instance(node, zone=ZONE, project=PROJECT)
    cluster.add_gpu_node(node, zone=ZONE, project=PROJECT, labels=selector, wait_ready=False)
    body = valid_sdworker("sd", namespace)
    body["spec"]["nodeSelector"] = selector
    body["spec"]["runtime"]["image"] = FAMILY
    custom(api).create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.SDWORKER_PLURAL, body)

    def served() -> Json | None:
        runtime: Json | None = (_worker(api, namespace, "sd").get("status") or {}).get("runtime")
        return runtime if runtime and _template_runtime(apps, namespace, "sd") == rid else None

    before = wait_for(served, timeout=60, what="the SDWorker to serve v1", describe=cloud_operator.log_tail)
    assert before["image"] == V1
    assert before["runtimeId"] == rid
    wait_for(lambda: _runtimedisk_ids(api, node) == {rid}, timeout=30, what="v1's RuntimeDisk on the node")

    # The operator restarts (its lookup cache is gone) while every family lookup fails.
    cloud_operator.stop()
    sim.add_faults(FaultRule("images.getFromFamily", http_status=503, count=-1))
    since = len(sim.requests())
    try:
        cloud_operator.start()
        degraded = wait_for(
            lambda: (
                _condition(_worker(api, namespace, "sd"), "Degraded") or None
                if _condition(_worker(api, namespace, "sd"), "Degraded").get("reason") == "CloudUnavailable"
                else None
            ),
            timeout=60,
            what="Degraded/CloudUnavailable after the failed lookup",
            describe=cloud_operator.log_tail,
        )
        assert f"still serving {V1}" in degraded["message"]
        # A full resync after the failure, still failing: nothing moved.
        wait_for(
            lambda: len([r for r in sim.requests(since) if "family/sd-rollout" in r.get("path", "")]) >= 2,
            timeout=60,
            what="a second failed lookup",
        )
        after = _worker(api, namespace, "sd")
        assert after["status"]["runtime"] == before
        assert _template_runtime(apps, namespace, "sd") == rid
        replicasets = apps.list_namespaced_replica_set(namespace).items
        assert len(replicasets) == 1, [rs.metadata.name for rs in replicasets]
        assert _runtimedisk_ids(api, node) == {rid}
    finally:
        sim.clear_faults()
    wait_for(
        lambda: _condition(_worker(api, namespace, "sd"), "Degraded").get("status") == "False",
        timeout=60,
        what="Degraded to clear once the cloud answers",
        describe=cloud_operator.log_tail,
    )
    assert _worker(api, namespace, "sd")["status"]["runtime"] == before


# --- acceptance: provision first, roll second, retire last ----------------------------------------------


def _runtime_tree_v2(tmp: Path) -> Path:
    """The demo's runtime tree plus one file: another runtime (another digest, image and runtime id)."""
    tree = tmp / "runtime-v2"
    shutil.copytree(standin_tree(), tree, symlinks=True)
    (tree / "ROLLOUT.txt").write_text("runtime v2\n")
    return tree


@dataclass
class Sampler:
    """Samples the whole world every few hundred milliseconds while a rollout runs, and records each broken
    rule: fewer than ``replicas - maxUnavailable`` Ready pods; a pod bound to a node where its runtime is not
    Ready (the agent's label); a pod bound to a node whose instance no longer has that runtime's disk
    attached (simulator inventory). Nodes and inventory are read before pods, so a pod that just went
    cannot look like a violation."""

    demo: Demo
    floor: int
    min_ready: int = 10**6
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    mixes: list[Counter[str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.sample()
            except Exception as exc:  # a failed read is not a broken rule; the next sample retries
                if "Connection" not in type(exc).__name__ and not isinstance(exc, client.ApiException):
                    self.violations.append(f"sampler: {exc!r}")

    def sample(self) -> None:
        assert self.demo.api is not None
        assert self.demo.sim is not None
        core = client.CoreV1Api(self.demo.api)
        labels = {n.metadata.name: dict(n.metadata.labels or {}) for n in core.list_node().items}
        attached = {
            i["name"]: {a["deviceName"] for a in i["_sim"]["attachments"] if not a["pending"]}
            for i in self.demo.sim.inventory()["instances"]
        }
        pods = self.demo.api.sanitize_for_serialization(
            core.list_namespaced_pod(SDWORKER[0], label_selector=f"{c.LABEL_APP_MANAGED_BY}={c.MANAGED_BY}")
        )["items"]
        ready = [p for p in pods if pod_ready(p) is not None and not p["metadata"].get("deletionTimestamp")]
        self.samples += 1
        self.min_ready = min(self.min_ready, len(ready))
        self.mixes.append(Counter(p["metadata"]["annotations"][c.ANNOTATION_RUNTIME_ID] for p in ready))
        if len(ready) < self.floor:
            self.violations.append(f"only {len(ready)} pods Ready (floor {self.floor})")
        for pod in pods:
            node, rid = pod["spec"].get("nodeName"), pod["metadata"]["annotations"][c.ANNOTATION_RUNTIME_ID]
            if not node or node not in labels:
                continue
            name = pod["metadata"]["name"]
            if labels[node].get(naming.runtime_ready_label(rid)) != c.RUNTIME_READY_VALUE:
                self.violations.append(f"{name} bound to {node}, where {rid} is not ready")
            if naming.device_name(rid) not in attached.get(node, set()):
                self.violations.append(f"{name} on {node} uses {rid}, whose disk is not attached there")


def _sdworker(demo: Demo) -> Json:
    assert demo.api is not None
    obj: Json = custom(demo.api).get_namespaced_custom_object(
        c.GROUP, c.VERSION, SDWORKER[0], c.SDWORKER_PLURAL, SDWORKER[1]
    )
    return obj


def _patch(demo: Demo, body: Json) -> None:
    assert demo.api is not None
    custom(demo.api).patch_namespaced_custom_object(
        c.GROUP, c.VERSION, SDWORKER[0], c.SDWORKER_PLURAL, SDWORKER[1], body
    )


def _ready_mix(demo: Demo) -> Counter[str]:
    _, _, pods, _ = demo.objects()
    return Counter(
        p["metadata"]["annotations"][c.ANNOTATION_RUNTIME_ID]
        for p in pods
        if pod_ready(p) is not None and not p["metadata"].get("deletionTimestamp")
    )


def _served_alone(demo: Demo, rid: str, replicas: int) -> bool:
    """``rid`` is served, no rollout is recorded, all replicas run it, and only its disks exist anywhere."""
    assert demo.sim is not None
    status = _sdworker(demo).get("status") or {}
    if (status.get("runtime") or {}).get("runtimeId") != rid or status.get("rollout"):
        return False
    _, rds, pods, _ = demo.objects()
    inventory = demo.sim.inventory()
    rd_runtimes = {rd["spec"]["runtimeId"] for rd in rds}
    disk_images = {
        naming.runtime_id("projects/" + d["sourceImage"].split("/projects/", 1)[1])
        for d in inventory["disks"]
    }
    return (
        _ready_mix(demo) == Counter({rid: replicas})
        and len(pods) == replicas
        and rd_runtimes == {rid}
        and disk_images == {rid}
    )


@needs_root
def test_a_new_runtime_rolls_onto_live_nodes_without_losing_capacity(tmp_path: Path) -> None:
    replicas = 5
    demo = Demo(
        nodes=replicas,
        latency="fast",
        warm_pool=1,
        ci=True,
        interval=0.5,
        timeout=240,
        workdir=tmp_path / "demo",
        autoscaler="scripted",
    )
    v2_build, _ = build_image(_runtime_tree_v2(tmp_path), log=lambda _line: None)
    sampler: Sampler | None = None
    try:
        demo.start()
        assert demo.scale_out(), "the 5 replicas on v1 did not come up"
        assert demo.sim is not None
        assert demo.api is not None
        assert demo.operator is not None
        v1 = wait_for(
            lambda: (_sdworker(demo).get("status") or {}).get("runtime"), timeout=60, what="v1 served"
        )
        wait_for(lambda: _served_alone(demo, v1["runtimeId"], replicas), timeout=120, what="v1 alone")
        sampler = Sampler(demo, floor=replicas - 1).start()

        # Publish v2 into the followed family: the operator provisions it next to v1 and rolls.
        started = time.monotonic()
        v2_image = publish_image(v2_build, demo.sim, project=DEMO_PROJECT, family=DEMO_FAMILY)
        v2 = naming.runtime_id(v2_image)
        assert v2 != v1["runtimeId"]
        rolling = wait_for(
            lambda: (_sdworker(demo).get("status") or {}).get("rollout"),
            timeout=120,
            what="the rollout to v2 to start",
            describe=demo.operator.log_tail,
        )
        assert rolling["target"]["runtimeId"] == v2
        # Roll back mid-rollout: once a pod runs v2, set the image back to v1's.
        wait_for(lambda: _ready_mix(demo)[v2] >= 1, timeout=180, what="a first pod on v2")
        _patch(demo, {"spec": {"runtime": {"image": v1["image"]}}})
        wait_for(
            lambda: _served_alone(demo, v1["runtimeId"], replicas),
            timeout=240,
            what="the rollback to v1 to converge",
            describe=lambda: demo.operator.log_tail() if demo.operator else "",
        )
        rolled_back = time.monotonic()

        # Follow the family again, and pause once a pod runs v2: the mix holds.
        _patch(
            demo,
            {"spec": {"runtime": {"image": f"projects/{DEMO_PROJECT}/global/images/family/{DEMO_FAMILY}"}}},
        )
        wait_for(lambda: _ready_mix(demo)[v2] >= 1, timeout=240, what="a first pod on v2 again")
        _patch(demo, {"metadata": {"annotations": {c.ANNOTATION_ROLLOUT_PAUSED: "true"}}})
        wait_for(
            lambda: (
                (_sdworker(demo).get("status") or {}).get("rollout", {}).get("paused") is True
                and sum(_ready_mix(demo).values()) == replicas
            ),
            timeout=120,
            what="the paused rollout to settle",
        )
        held = _ready_mix(demo)
        assert held[v2] >= 1, held
        assert held[v1["runtimeId"]] >= 1, held
        # The mix holds while the operator looks at the family twice more (it re-resolves it every
        # minute, each time followed by a whole decision) and the Deployment sits paused.
        sim = demo.sim
        watched_from, since = sampler.samples, len(sim.requests())
        wait_for(
            lambda: (
                len([r for r in sim.requests(since) if f"family/{DEMO_FAMILY}" in r.get("path", "")]) >= 2
            ),
            timeout=180,
            what="two more family lookups while paused",
        )
        assert all(mix == held for mix in sampler.mixes[watched_from:]), sampler.mixes[watched_from:]

        # Resume: the rollout completes and only v2 remains anywhere.
        resumed = time.monotonic()
        _patch(demo, {"metadata": {"annotations": {c.ANNOTATION_ROLLOUT_PAUSED: None}}})
        wait_for(
            lambda: _served_alone(demo, v2, replicas),
            timeout=240,
            what="v2 alone",
            describe=demo.operator.log_tail,
        )
        finished = time.monotonic()
        sampler.stop()
        print(
            f"\nrollout measurements: first rollout + rollback {rolled_back - started:.1f}s; "
            f"resumed rollout to v2 {finished - resumed:.1f}s; min Ready {sampler.min_ready}/{replicas} "
            f"over {sampler.samples} samples"
        )
        assert sampler.violations == [], sampler.violations[:20]
        assert sampler.min_ready >= replicas - 1
        reasons = {
            e.reason
            for e in client.CoreV1Api(demo.api)
            .list_namespaced_event(SDWORKER[0], field_selector=f"involvedObject.name={SDWORKER[1]}")
            .items
        }
        expected = {"RolloutStarted", "RolloutProgress", "RolloutRolledBack", "RolloutComplete"}
        assert expected <= reasons, reasons
    finally:
        if sampler is not None:
            sampler.stop()
        demo.stop()
