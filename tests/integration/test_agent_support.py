"""Helpers for the node agent's integration tests (no tests here): real disks, real processes, real RBAC.

- Runtime disk images are built for real, by the image builder's CLI (``sdworker_images``): a small
  runtime tree, its content index ``/.sdworker/manifest.json`` (``sdworker_content``, shared with the agent),
  ext4.
- Disks are created from them and attached through the compute API simulator, which backs each
  attachment with a loop device at ``<instance dev root>/disk/by-id/google-<deviceName>``.
- Images are published by the real publisher (``computesim.testing.publish_build``), so they carry the
  sdworker metadata the operator's cloud layer reads their digest from.
- The test plays the operator with the operator's own parts: the image resolved by its cloud layer
  (``GceCloud.resolve_image``), the spec placed by ``domain.placement.place`` for an SDWorker selecting
  the node, the object made by ``placement.runtimedisk_manifest``, the phases up to ``Attached`` computed
  by ``api.transitions.advance``.
- Agents run as processes (``python -m sdworker_agent``), with the credentials they have in production: a
  ServiceAccount token bound to the agent's pod on that node, under the RBAC and admission policy from
  ``daemonset/manifests``.

Everything started here is stopped by ``Harness.close``: agents, mounts under the test's host roots,
RuntimeDisks (finalizers stripped), cluster-scoped RBAC and policies, nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from google.cloud import compute_v1
from kubernetes import client, config

from sdworker.api import constants as c
from sdworker.api import naming, transitions
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import DiskType, Phase, ResolvedImage, RuntimeMode
from sdworker.cloud.gce import GceCloud
from sdworker.domain import placement
from sdworker_agent import mountinfo
from sdworker_content.index import INDEX_NAME, ContentIndex
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim, client_kwargs
from sdworker_tools.computesim.testing import publish_build
from sdworker_tools.nodes import Taint
from sdworker_tools.wait import Abort, wait_for
from tests.unit.invalid_specs import valid_sdworker

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "daemonset" / "manifests"
MANIFEST_NAMESPACE = "sdworker-system"
SIM_PROJECT = "sim-project"
ZONE = "us-central1-a"
MODEL = "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors"
STARTUP_TAINT = Taint(c.STARTUP_TAINT_KEY, c.STARTUP_TAINT_VALUE, c.STARTUP_TAINT_EFFECT)
GPU_TAINT = Taint(c.GPU_RESOURCE, "present", "NoSchedule")
Json = dict[str, Any]


# --- runtime disk images -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeImage:
    name: str
    path: Path  # the raw ext4 image file
    digest: str  # the content digest of its manifest, as RuntimeDisk spec.imageDigest carries it
    model_bytes: int

    @property
    def image(self) -> str:
        return f"projects/{SIM_PROJECT}/global/images/{self.name}"

    @property
    def runtime_id(self) -> str:
        return naming.runtime_id(self.image)


def build_runtime_image(
    workdir: Path, name: str, *, model_bytes: int = 8 * 1024 * 1024, pack: bool = False
) -> RuntimeImage:
    """A miniature runtime (venv, webui, a model) made into a disk image by the real image builder.

    ``python -m sdworker_images build --from-dir`` writes the index with ``sdworker_content`` and makes
    the ext4 image with ``mkfs.ext4 -d`` exactly as for production, so the agent is tested against the
    artifact it will really mount. ``pack`` also writes ``image.tar.gz``, for ``sdworker image publish``.
    """
    tree = workdir / f"{name}.tree"
    files = {
        "venv/pyvenv.cfg": b"home = /usr/bin\nversion = 3.10.12\ninclude-system-site-packages = false\n",
        "venv/lib/python3.10/site-packages/torch/__init__.py": b"__version__ = '2.1.2'\n",
        "stable-diffusion-webui/launch.py": b"print('webui')\n",
        "stable-diffusion-webui/extensions/.keep": b"",
    }
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    (tree / "venv/bin").mkdir()
    (tree / "venv/bin/python").symlink_to("/usr/bin/python3.10")
    model = tree / MODEL
    model.parent.mkdir(parents=True, exist_ok=True)
    with model.open("wb") as f:
        for _ in range(model_bytes // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(model_bytes % (1 << 20)))
    out = workdir / f"{name}.image"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "images"), *filter(None, [env.get("PYTHONPATH")])])
    argv = [sys.executable, "-m", "sdworker_images", "build", "--from-dir", str(tree), "--out", str(out)]
    procs.run([*argv, *([] if pack else ["--no-pack"]), "--quiet"], env=env, timeout=300)
    digest = ContentIndex.from_json((out / INDEX_NAME).read_bytes()).digest
    return RuntimeImage(name=name, path=out / "disk.raw", digest=digest, model_bytes=model_bytes)


def corrupt_group_descriptors(disk: Path) -> None:
    """Overwrite the group descriptor table (block 1 with 4 KiB blocks): blkid still says ext4.

    ``disk`` is an image file or, as a disk going bad on the node, the attached block device itself.
    """
    with disk.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(4096))


# --- the cluster side --------------------------------------------------------------------------


def manifest_docs(namespace: str, suffix: str, files: Sequence[str]) -> list[Json]:
    """The agent's manifests for a test namespace; cluster-wide objects get ``-<suffix>`` names."""
    docs: list[Json] = []
    for name in files:
        text = (MANIFESTS / name).read_text().replace(MANIFEST_NAMESPACE, namespace)
        docs += [d for d in yaml.safe_load_all(text) if d]
    shared = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] in shared or meta.get("namespace") == "default":
            meta["name"] = f"{meta['name']}-{suffix}"
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{suffix}"
        if doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] = f"{doc['spec']['policyName']}-{suffix}"
    return docs


@dataclass
class AgentProcess:
    """``python -m sdworker_agent`` for one node; restartable, killable."""

    node: str
    kubeconfig: Path
    dev_root: Path
    host_root: Path
    logdir: Path
    extra_args: Sequence[str] = ()
    proc: procs.Process | None = None
    port: int = 0
    starts: int = 0

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "daemonset"), *filter(None, [env.get("PYTHONPATH")])])
        self.proc = procs.Process(
            f"agent-{self.node}",
            [
                sys.executable,
                "-m",
                "sdworker_agent",
                f"--node-name={self.node}",
                f"--kubeconfig={self.kubeconfig}",
                f"--dev-root={self.dev_root}",
                f"--host-root={self.host_root}",
                f"--health-address=127.0.0.1:{self.port}",
                "--resync-seconds=5",
                "--watch-timeout=4",  # renew the watch often: the renewal path runs in every test
                "--verbose",
                *self.extra_args,
            ],
            self.logdir / f"agent-{self.node}-{self.starts}.log",
            env=env,
        )
        proc = self.proc

        def healthy() -> bool:
            if not proc.alive():
                raise Abort(f"agent for {self.node} exited:\n{proc.log_tail(60)}")
            return self.http("/healthz")[0] == 200

        wait_for(
            healthy, timeout=60, what=f"the agent of {self.node} to serve /healthz", describe=proc.log_tail
        )

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, ""

    def metric(self, name: str, labels: str = "") -> float | None:
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return None

    def kill(self) -> None:
        """SIGKILL, as when the node's kernel kills the container: no cleanup at all."""
        if self.proc is not None:
            if self.proc.alive():
                self.proc.popen.kill()
                self.proc.popen.wait(10)
            self.proc.stop()  # reaps and closes the log; the process is already dead

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else ""


def mounts_under(root: Path) -> list[mountinfo.Mount]:
    prefix = str(root.resolve()) + "/"
    table = mountinfo.parse(Path("/proc/self/mountinfo").read_bytes())
    return [m for m in table if m.mount_point.startswith(prefix)]


@dataclass
class Harness:
    """One test's world: kwok nodes, simulated instances and disks, RuntimeDisks, agents."""

    cluster: LocalCluster
    api: client.ApiClient
    sim: ComputeSim | None
    namespace: str
    suffix: str
    workdir: Path
    nodes: list[str] = field(default_factory=list)
    runtimedisks: list[str] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)
    installed: list[Json] = field(default_factory=list)
    host_roots: list[Path] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    # --- nodes and disks -------------------------------------------------------------------

    def add_node(self, name: str, *, taints: Sequence[Taint] = (STARTUP_TAINT, GPU_TAINT)) -> str:
        """A GPU node of this harness, its VM first as on GKE (the node registers from a running VM)."""
        self.nodes.append(name)
        if self.sim is not None:
            self.sim.create_instance(name, zone=ZONE, project=SIM_PROJECT)
        self.cluster.add_gpu_node(
            name, zone=ZONE, project=SIM_PROJECT, taints=taints, labels={"sdworker.test/harness": self.suffix}
        )
        return name

    @property
    def simulator(self) -> ComputeSim:
        assert self.sim is not None, "this harness runs without the compute simulator"
        return self.sim

    def register(self, image: RuntimeImage) -> None:
        """Publish ``image`` (built with ``pack=True``) into the simulator as ``sdworker image publish``
        does: its labels and description, hence its digest, come from ``sdworker.image_meta``."""
        publish_build(self.simulator, image.path.parent, project=SIM_PROJECT, name=image.name)

    def resolve(self, image: RuntimeImage) -> ResolvedImage:
        """The image and digest the operator's cloud layer resolves for ``image`` from its metadata."""

        async def main() -> ResolvedImage:
            cloud = GceCloud(api_endpoint=self.simulator.endpoint, anonymous=True)
            try:
                return await cloud.resolve_image(image.image)
            finally:
                await cloud.close()

        return asyncio.run(main())

    def attach(self, node: str, image: RuntimeImage, *, mode: RuntimeMode = RuntimeMode.PER_NODE) -> None:
        """What the operator's cloud layer does: a disk from the image, attached to the node's instance.

        PerNode: the node's own disk, READ_WRITE. SharedReadOnly: the zone's one disk of this runtime
        (created by the first call), attached READ_ONLY to every node, as GCE multi-attach does.
        """
        rid = image.runtime_id
        shared = mode is RuntimeMode.SHARED_READ_ONLY
        disk = naming.shared_disk_name(ZONE, rid) if shared else naming.disk_name(node, rid)
        kw = client_kwargs(self.simulator.endpoint)
        ops = compute_v1.ZoneOperationsClient(**kw)
        disks = compute_v1.DisksClient(**kw)
        if not shared or not any(d.name == disk for d in disks.list(project=SIM_PROJECT, zone=ZONE)):
            op = disks.insert(
                project=SIM_PROJECT,
                zone=ZONE,
                disk_resource=compute_v1.Disk(name=disk, source_image=image.image, size_gb=10),
            )
            _check(ops.wait(project=SIM_PROJECT, zone=ZONE, operation=op.name))
        op = compute_v1.InstancesClient(**kw).attach_disk(
            project=SIM_PROJECT,
            zone=ZONE,
            instance=node,
            attached_disk_resource=compute_v1.AttachedDisk(
                source=f"projects/{SIM_PROJECT}/zones/{ZONE}/disks/{disk}",
                device_name=naming.device_name(rid),
                mode="READ_ONLY" if shared else "READ_WRITE",
                auto_delete=not shared,
            ),
        )
        _check(ops.wait(project=SIM_PROJECT, zone=ZONE, operation=op.name))

    def dev_root(self, node: str) -> Path:
        return Path(self.simulator.dev_root(node))

    def create_runtimedisk(
        self,
        node: str,
        image: RuntimeImage,
        *,
        digest: str | None = None,
        mode: RuntimeMode = RuntimeMode.PER_NODE,
    ) -> str:
        """The RuntimeDisk the operator creates for an SDWorker selecting ``node``, made by the operator's
        own parts, then moved (as its cloud layer would, once ``attach`` has run) to ``Attached``.

        ``digest`` is the digest the RuntimeDisk names; None: the one the cloud layer resolves from the
        published image (``register``). The spec asks to prefetch the model and a file that is not there.
        """
        resolved = ResolvedImage(image.image, digest) if digest is not None else self.resolve(image)
        worker = valid_sdworker(f"sdw-{self.suffix}", self.namespace)
        worker["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        worker["spec"]["runtime"].update(
            image=image.image,
            mode=str(mode),
            diskType=str(
                DiskType.HYPERDISK_ML if mode is RuntimeMode.SHARED_READ_ONLY else DiskType.PD_BALANCED
            ),
            diskSizeGb=10,
            prefetch=[MODEL, "models/not-there.ckpt"],
        )
        owner = self.node(node)
        meta = owner["metadata"]
        info = placement.NodeInfo(node, meta.get("labels") or {}, owner["spec"].get("providerID") or "")
        placed = placement.place([info], [parse_sdworker(worker)], {image.image: resolved})
        spec = placed.for_node(node)[image.runtime_id]
        name = naming.runtimedisk_name(node, spec.runtime_id)
        body = placement.runtimedisk_manifest(name, node, meta["uid"], spec.to_dict())
        self.custom.create_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, body)
        self.runtimedisks.append(name)
        status: Json = {}
        now = datetime.now(UTC)
        for phase, reason, message in (
            (Phase.CREATING, "CreatingDisk", f"Creating disk {spec.disk_name} in {spec.zone}"),
            (Phase.ATTACHING, "AttachingDisk", f"Attaching {spec.disk_name} to {spec.instance}"),
            (
                Phase.ATTACHED,
                "Attached",
                f"{spec.disk_name} attached to {spec.instance} as {spec.device_name}",
            ),
        ):
            status = transitions.advance(
                status, transitions.Writer.OPERATOR, phase, reason=reason, message=message, now=now
            )
        self.custom.patch_cluster_custom_object_status(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"status": status}
        )
        return name

    def runtimedisk(self, name: str) -> Json | None:
        try:
            obj: Json = self.custom.get_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def phase(self, name: str) -> str:
        obj = self.runtimedisk(name) or {}
        return str((obj.get("status") or {}).get("phase", ""))

    def phase_is(self, name: str, phase: str) -> bool:
        return self.phase(name) == phase

    def untainted(self, node: str) -> bool:
        return not self.tainted(node)

    def node(self, name: str) -> Json:
        obj: Json = self.api.sanitize_for_serialization(self.core.read_node(name))
        return obj

    def tainted(self, node: str) -> bool:
        return any(t["key"] == c.STARTUP_TAINT_KEY for t in self.node(node)["spec"].get("taints") or [])

    def labels(self, node: str) -> dict[str, str]:
        return dict(self.node(node)["metadata"].get("labels") or {})

    # --- the agent's identity and processes ---------------------------------------------------

    def install(self, files: Sequence[str]) -> list[Json]:
        """The agent's manifests from ``daemonset/manifests``, made for this test (``manifest_docs``)."""
        return self.apply(manifest_docs(self.namespace, self.suffix, files))

    def apply(self, docs: list[Json]) -> list[Json]:
        self.installed += docs
        self.cluster.kubectl("apply", "--server-side", "-f", "-", input_text=as_list(docs))
        return docs

    def agent_pod(self, node: str, *, service_account: str = "sdworker-agent") -> Json:
        """A pod of the agent on ``node`` (kwok runs it), for a token bound to it."""
        daemonset = next(
            d
            for d in manifest_docs(self.namespace, self.suffix, ["daemonset.yaml"])
            if d["kind"] == "DaemonSet"
        )
        spec = copy.deepcopy(daemonset["spec"]["template"]["spec"])
        spec.update(nodeName=node, serviceAccountName=service_account)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"sdworker-agent-{node}"[:63].rstrip("-"), "namespace": self.namespace},
            "spec": spec,
        }
        created = self.core.create_namespaced_pod(self.namespace, body)
        pod: Json = self.api.sanitize_for_serialization(created)
        return pod

    def install_daemonset(self) -> Json:
        """The real DaemonSet, kept to this test's nodes (the cluster may hold other GPU nodes)."""
        (daemonset,) = [
            d
            for d in manifest_docs(self.namespace, self.suffix, ["daemonset.yaml"])
            if d["kind"] == "DaemonSet"
        ]
        daemonset["spec"]["template"]["spec"]["nodeSelector"] = {"sdworker.test/harness": self.suffix}
        self.apply([daemonset])
        return daemonset

    def daemonset_pod(self, node: str) -> Json | None:
        """The DaemonSet's pod on ``node`` once it runs there (kwok plays the kubelet)."""
        pods = self.core.list_namespaced_pod(
            self.namespace,
            label_selector="app.kubernetes.io/name=sdworker-agent",
            field_selector=f"spec.nodeName={node}",
        )
        running = [p for p in pods.items if p.status.phase == "Running"]
        if not running:
            return None
        pod: Json = self.api.sanitize_for_serialization(running[0])
        return pod

    def token(self, service_account: str, pod: Json | None = None) -> str:
        spec: Json = {"audiences": [], "expirationSeconds": 3600}
        if pod is not None:
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
        result = self.core.create_namespaced_service_account_token(
            service_account, self.namespace, {"spec": spec}
        )
        return str(result.status.token)

    def kubeconfig_for(self, name: str, token: str) -> Path:
        return self.cluster.write_token_kubeconfig(self.workdir / f"{name}.kubeconfig", token, user=name)

    def agent_credentials(self, node: str, pod: Json | None = None) -> Path:
        """The agent's production identity on ``node``: its ServiceAccount, token bound to its pod there."""
        pod = pod or self.agent_pod(node)
        return self.kubeconfig_for(f"agent-{node}", self.token("sdworker-agent", pod))

    def start_agent(self, node: str, kubeconfig: Path, *extra_args: str) -> AgentProcess:
        # A space in the path: mountinfo escapes it (\040) and the agent must still find its mounts.
        host_root = self.workdir / f"host root {node}"
        host_root.mkdir(exist_ok=True)
        self.host_roots.append(host_root)
        agent = AgentProcess(node, kubeconfig, self.dev_root(node), host_root, self.workdir, extra_args)
        self.agents.append(agent)
        agent.start()
        return agent

    def describe(self) -> str:
        parts = []
        for name in self.runtimedisks:
            status = (self.runtimedisk(name) or {}).get("status") or {}
            parts.append(f"{name}: {status.get('phase')} {status.get('reason')}: {status.get('message')}")
        for agent in self.agents:
            parts.append(f"--- agent {agent.node} ---\n{agent.log_tail(25)}")
        return "\n".join(parts)

    # --- cleanup -------------------------------------------------------------------------------

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for root in self.host_roots:
            for m in sorted(mounts_under(root), key=lambda m: -m.mount_id):
                subprocess.run(["umount", m.mount_point], check=False, capture_output=True)
        for name in self.runtimedisks:
            with contextlib.suppress(client.ApiException):
                self.custom.patch_cluster_custom_object(
                    c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"metadata": {"finalizers": None}}
                )
            with contextlib.suppress(client.ApiException):
                self.custom.delete_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name)
        if self.installed:
            self.cluster.kubectl(
                "delete",
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
                input_text=as_list(self.installed),
            )
        for node in self.nodes:
            with contextlib.suppress(client.ApiException):
                self.core.delete_node(node)


def as_list(docs: Sequence[Json]) -> str:
    """Objects for ``kubectl -f -`` as one JSON List: no YAML guessing whether ``1e5432`` is a number."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)})


def _check(op: compute_v1.Operation) -> None:
    if op.error and op.error.errors:
        raise RuntimeError(f"simulated operation {op.name} failed: {op.error}")


@contextlib.contextmanager
def api_as(kubeconfig: Path) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        yield api


def api_error(exc: client.ApiException) -> Json:
    try:
        body: Json = json.loads(exc.body)
    except (TypeError, ValueError):
        body = {"message": str(exc.body)}
    return body
