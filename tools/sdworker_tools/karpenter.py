"""Karpenter as the rig's autoscaler: the GCE-shaped kwok build from ``tools/karpenter``, run as a process.

``Karpenter(cluster, sim, logdir).start()`` builds (or finds in the cache) the binary, applies the
Karpenter CRDs of that build and the rig's NodePool/KWOKNodeClass/instance types
(``tools/karpenter/config``), and starts it against the local control plane and the compute API
simulator: pending pods then become NodeClaims, simulator instances and kwok Nodes; emptied nodes
are consolidated away, deleting their instances. ``stop()`` ends the process; ``delete_nodepools()``
first lets Karpenter remove every node it made (what a teardown wants while it still runs).

Karpenter runs with its own client certificate (``system:masters``, as kwok does: it is part of the
test harness, standing in for a cloud's autoscaler), leader election off, and its metrics and
health servers on free 127.0.0.1 ports.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.wait import Abort, wait_for

TOOLS = Path(__file__).resolve().parent.parent / "karpenter"
BUILD_SCRIPT = TOOLS / "build.sh"
CONFIG_DIR = TOOLS / "config"
ENV_OVERRIDE = "SDWORKER_KARPENTER_DIR"

NODEPOOL_LABEL = "karpenter.sh/nodepool"
# GCE labels the provider puts on its instances (tools/karpenter/provider.go).
INSTANCE_LABEL_CLUSTER = "karpenter-sh-cluster"
INSTANCE_LABEL_NODECLAIM = "karpenter-sh-nodeclaim"

# Seconds from the instance RUNNING to its Node registering (the KWOKNodeClass's
# nodeRegistrationDelay): a GKE node's VM boots and its kubelet registers tens of seconds after
# GCE reports the instance RUNNING; the fast profiles register at once.
BOOT_SECONDS: Mapping[str, float] = {"realistic": 30.0, "fast": 0.0, "instant": 0.0}

KARPENTER_GROUP = "karpenter.sh"
KARPENTER_VERSION = "v1"


@dataclass(frozen=True)
class Build:
    """What ``tools/karpenter/build.sh`` left in its cache directory."""

    directory: Path

    @property
    def binary(self) -> Path:
        return self.directory / "karpenter"

    @property
    def crds(self) -> list[Path]:
        return sorted((self.directory / "crds").glob("*.yaml"))

    @property
    def version(self) -> str:
        return self.directory.name.split("-", 1)[0]


def ensure_built() -> Build:
    """The Karpenter build, made (progress on stderr) if the cache lacks it."""
    override = os.environ.get(ENV_OVERRIDE)
    directory = Path(override) if override else Path(procs.run_streaming([str(BUILD_SCRIPT)]).strip())
    build = Build(directory)
    if not os.access(build.binary, os.X_OK) or not build.crds:
        raise FileNotFoundError(f"{directory} lacks the karpenter binary or its CRDs; run {BUILD_SCRIPT}")
    return build


def rig_config(
    *, boot_s: float, consolidate_after: str | None = None, gpu_limit: int | None = None
) -> list[dict[str, Any]]:
    """The NodePool and KWOKNodeClass of ``config/nodepool.yaml`` with the run's settings."""
    if boot_s < 0:
        raise ValueError(f"boot_s must be >= 0, got {boot_s}")
    if gpu_limit is not None and gpu_limit < 1:
        raise ValueError(f"gpu_limit must be >= 1, got {gpu_limit}")
    docs = [d for d in yaml.safe_load_all((CONFIG_DIR / "nodepool.yaml").read_text()) if d]
    for doc in docs:
        if doc["kind"] == "KWOKNodeClass":
            doc["spec"]["nodeRegistrationDelay"] = f"{boot_s:g}s"
        elif doc["kind"] == "NodePool":
            if consolidate_after is not None:
                doc["spec"]["disruption"]["consolidateAfter"] = consolidate_after
            if gpu_limit is not None:
                doc["spec"]["limits"]["nvidia.com/gpu"] = str(gpu_limit)
    return docs


class Karpenter:
    """One Karpenter process for one ``LocalCluster`` and one ``ComputeSim``.

    ``boot_s`` defaults to the simulator's latency profile (``BOOT_SECONDS``); ``consolidate_after``
    and ``gpu_limit`` override the NodePool's. Instances go to ``project``, labelled with
    ``cluster_name`` (Karpenter lists only those as its own).
    """

    def __init__(
        self,
        cluster: LocalCluster,
        sim: ComputeSim,
        logdir: Path,
        *,
        project: str = "sdworker-test",
        cluster_name: str = "sdworker",
        boot_s: float | None = None,
        consolidate_after: str | None = None,
        gpu_limit: int | None = None,
        log_level: str = "info",
    ) -> None:
        self.cluster = cluster
        self.sim = sim
        self.logdir = logdir
        self.project = project
        self.cluster_name = cluster_name
        self.boot_s = BOOT_SECONDS.get(sim.config.latency, 0.0) if boot_s is None else boot_s
        self.config = rig_config(boot_s=self.boot_s, consolidate_after=consolidate_after, gpu_limit=gpu_limit)
        self.log_level = log_level
        self.build: Build | None = None
        self.proc: procs.Process | None = None
        self.metrics_port = 0
        self.health_port = 0

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Karpenter:
        self.build = build = ensure_built()
        self.install_crds()
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": self.config}),
        )
        kubeconfig = self.cluster.client_kubeconfig(
            "karpenter", common_name="karpenter", organizations=("system:masters",)
        )
        self.metrics_port, self.health_port = free_port(), free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "DISABLE_LEADER_ELECTION": "true",
            "METRICS_PORT": str(self.metrics_port),
            "HEALTH_PROBE_PORT": str(self.health_port),
            "INSTANCE_TYPES_FILE_PATH": str(CONFIG_DIR / "instance-types.json"),
            "COMPUTE_ENDPOINT": self.sim.api_base,
            "GCE_PROJECT": self.project,
            "CLUSTER_NAME": self.cluster_name,
            "LOG_LEVEL": self.log_level,
        }
        self.proc = proc = procs.Process(
            "karpenter", [str(build.binary)], self.logdir / "karpenter.log", env=env
        )

        def ready() -> bool:
            if not proc.alive():
                raise Abort(f"karpenter exited with code {proc.popen.returncode}:\n{proc.log_tail(40)}")
            try:
                with urllib.request.urlopen(f"{self.health_url}/readyz", timeout=2) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_for(ready, timeout=120, what="karpenter's readiness endpoint", describe=proc.log_tail)
        pools = self.nodepool_names
        wait_for(
            lambda: all(self._condition("nodepool", p, "Ready") == "True" for p in pools),
            timeout=60,
            what=f"NodePools {pools} Ready",
            describe=proc.log_tail,
        )
        return self

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL); what it made stays (see ``delete_nodepools``)."""
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> Karpenter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def install_crds(self) -> None:
        """Apply this build's CRDs and wait until they are Established."""
        assert self.build is not None
        for crd in self.build.crds:
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        names = self.cluster.kubectl("get", *(f"-f={c}" for c in self.build.crds), "-o", "name").split()
        for name in names:
            self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", name)

    def delete_nodepools(self, timeout: float = 180) -> None:
        """Delete the NodePools and wait until Karpenter has removed every NodeClaim (and so every
        node and instance it made). Needs the process running: its finalizers do the work."""
        for pool in self.nodepool_names:
            self.cluster.kubectl("delete", "nodepool", pool, "--ignore-not-found", "--wait=false")
        wait_for(
            lambda: not self.nodeclaims(),
            timeout=timeout,
            what="Karpenter to remove every NodeClaim",
            describe=lambda: [c["metadata"]["name"] for c in self.nodeclaims()],
        )

    # --- what callers look at --------------------------------------------------------------

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def nodepool_names(self) -> list[str]:
        return [d["metadata"]["name"] for d in self.config if d["kind"] == "NodePool"]

    @property
    def startup_taints(self) -> list[dict[str, str]]:
        """The NodePools' startupTaints (what Karpenter's nodes carry until an agent removes them)."""
        return [
            t
            for d in self.config
            if d["kind"] == "NodePool"
            for t in d["spec"]["template"]["spec"]["startupTaints"]
        ]

    def nodeclaims(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "nodeclaims.karpenter.sh", "-o", "json")
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def instances(self) -> list[dict[str, Any]]:
        """The simulator's instances this Karpenter made (by the cluster label it sets)."""
        return [
            i
            for i in self.sim.inventory()["instances"]
            if i.get("labels", {}).get(INSTANCE_LABEL_CLUSTER) == self.cluster_name
        ]

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else ""

    def _condition(self, kind: str, name: str, condition: str) -> str:
        return self.cluster.kubectl(
            "get", kind, name, "-o", f'jsonpath={{.status.conditions[?(@.type=="{condition}")].status}}'
        ).strip()
