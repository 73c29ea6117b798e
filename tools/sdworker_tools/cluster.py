"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, on 127.0.0.1 with free ports.

Owns the lifecycle of one such cluster: certificates, per-component kubeconfigs, process start
order, readiness, start-up timings, and a teardown that leaves no process or file behind. The
apiserver runs with real client-certificate authentication, service-account tokens and
``--authorization-mode=Node,RBAC``, so RBAC and admission policies are exercised for real. Nodes
are kwok-simulated; ``add_gpu_node`` creates GKE-shaped GPU nodes in one call.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdworker_tools import procs
from sdworker_tools.binaries import Binaries, ensure_built
from sdworker_tools.nodes import GpuNodeSpec, Taint, gpu_node_manifest
from sdworker_tools.pki import ClusterPKI, KeyPair
from sdworker_tools.wait import Abort, WaitTimeout, wait_for

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
START_TIMEOUT = 120.0
WORKDIR_PREFIX = "sdworker-cluster-"
# kwok's upstream pod stages with SD pods (label sdworker.dev/sdworker) left out: the pod runner
# (sdworker_tools.podrunner) plays the kubelet for those. Node and lease stages come with the binary.
POD_STAGES = Path(__file__).resolve().parent.parent / "testcluster" / "stages"
_OWNER_FILE = "owner.pid"


def sweep_stale_workdirs(parent: Path | None = None) -> list[Path]:
    """Remove work directories whose launcher died without cleaning up (e.g. SIGKILL).

    Their processes are already gone (PR_SET_PDEATHSIG); only files can be left.
    """
    removed = []
    for workdir in Path(parent or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
    return removed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the small race is acceptable in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    kwok_node: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(*(free_port() for _ in range(7)))


@dataclass
class StartupTimings:
    """Seconds from ``start()`` to each milestone; ``ready`` is the figure reported to users."""

    etcd: float = 0.0
    apiserver: float = 0.0
    controllers: float = 0.0
    ready: float = 0.0

    def summary(self) -> str:
        return (
            f"control plane ready in {self.ready:.1f}s "
            f"(etcd {self.etcd:.1f}s, apiserver {self.apiserver:.1f}s, "
            f"controller-manager+scheduler+kwok {self.controllers:.1f}s)"
        )


@dataclass
class LocalCluster:
    """Start with ``start()`` or as a context manager; everything lives under ``workdir``."""

    binaries: Binaries | None = None
    workdir: Path | None = None
    log: Callable[[str], None] = print
    keep_workdir: bool = False
    timings: StartupTimings = field(default_factory=StartupTimings)

    def __post_init__(self) -> None:
        self._procs: list[procs.Process] = []
        self._owns_workdir = self.workdir is None
        self.ports = Ports.allocate()
        self.started = False

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.binaries is None:
            self.binaries = ensure_built()
        if self.workdir is None:
            sweep_stale_workdirs()
            self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / _OWNER_FILE).write_text(str(os.getpid()))
        (self.workdir / "logs").mkdir(exist_ok=True)
        t0 = time.monotonic()
        try:
            self._write_pki_and_kubeconfigs()
            self._start_etcd()
            self.timings.etcd = time.monotonic() - t0
            self._start_apiserver()
            self.timings.apiserver = time.monotonic() - t0
            self._start_controllers()
            self.timings.controllers = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.timings.ready = time.monotonic() - t0
        self.started = True
        self.log(f"[cluster] {self.timings.summary()}; kubeconfig {self.kubeconfig}")

    def stop(self) -> None:
        """Stop every process (reverse start order) and remove the work directory."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        self.started = False
        if self.workdir is not None and self._owns_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def processes(self) -> Sequence[procs.Process]:
        return tuple(self._procs)

    # --- what clients need -----------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self._pki.ca.cert

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        """Run the cluster's own kubectl (built with the control plane) as admin."""
        assert self.binaries is not None
        result = procs.run(
            [str(self.binaries.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input_text=input_text,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout if result.returncode == 0 else result.stderr

    def client_kubeconfig(self, name: str, *, common_name: str, organizations: tuple[str, ...] = ()) -> Path:
        """A kubeconfig with its own client certificate, for another rig component (e.g. Karpenter)."""
        return self._write_client_kubeconfig(
            name, self._pki.issue(name, common_name=common_name, organizations=organizations)
        )

    def write_token_kubeconfig(self, path: Path, token: str, user: str = "token-user") -> Path:
        """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        path.write_text(yaml.safe_dump(self._kubeconfig_doc(user, {"token": token})))
        path.chmod(0o600)
        return path

    # --- nodes ---------------------------------------------------------------------------------

    def add_gpu_node(
        self,
        name: str,
        *,
        zone: str = "us-central1-a",
        project: str = "sdworker-test",
        accelerator: str = "nvidia-tesla-t4",
        gpus: int = 1,
        taints: Sequence[Taint] = (),
        labels: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> dict[str, Any]:
        """Create a kwok GPU node shaped like a GKE one; by default wait until kwok reports Ready."""
        spec = GpuNodeSpec(
            name=name,
            zone=zone,
            project=project,
            accelerator=accelerator,
            gpus=gpus,
            taints=tuple(taints),
            labels=labels or {},
        )
        manifest = gpu_node_manifest(spec)
        # JSON, not YAML: kubectl would read an unquoted label value like 1e5432 as a number.
        self.kubectl("create", "-f", "-", input_text=json.dumps(manifest))
        if wait_ready:
            wait_for(
                lambda: self._node_ready(name),
                timeout=60,
                what=f"kwok node {name} to become Ready",
            )
        return manifest

    def _node_ready(self, name: str) -> bool:
        out = self.kubectl(
            "get", "node", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
        )
        return out.strip() == "True"

    # --- internals -----------------------------------------------------------------------------

    def _kubeconfig_doc(self, user: str, credentials: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sdworker-local",
                    "cluster": {"server": self.server, "certificate-authority": str(self._pki.ca.cert)},
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": user, "context": {"cluster": "sdworker-local", "user": user}}],
            "current-context": user,
        }

    def _write_client_kubeconfig(self, name: str, pair: KeyPair) -> Path:
        assert self.workdir is not None
        path = self.workdir / f"{name}.kubeconfig"
        doc = self._kubeconfig_doc(name, {"client-certificate": str(pair.cert), "client-key": str(pair.key)})
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def _write_pki_and_kubeconfigs(self) -> None:
        assert self.workdir is not None
        self._pki = ClusterPKI(self.workdir / "pki")
        self._serving = self._pki.issue("apiserver", common_name="kube-apiserver", server=True)
        identities = {
            # The admin of a test cluster; also what tests and the demo use by default.
            "admin": ("admin", ("system:masters",)),
            # The bootstrap RBAC roles for these users exist; the controllers themselves run
            # with per-controller ServiceAccount credentials (--use-service-account-credentials).
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            # kwok plays every kubelet (node status, leases, pod status); a test harness part.
            "kwok": ("kwok-controller", ("system:masters",)),
        }
        self._kubeconfigs = {
            name: self._write_client_kubeconfig(
                name, self._pki.issue(name, common_name=cn, organizations=orgs)
            )
            for name, (cn, orgs) in identities.items()
        }

    def _spawn(self, name: str, argv: Sequence[str]) -> procs.Process:
        assert self.workdir is not None
        proc = procs.Process(name, argv, self.workdir / "logs" / f"{name}.log")
        self._procs.append(proc)
        return proc

    def _kwok_stages(self) -> list[Path]:
        assert self.binaries is not None
        node_stages = [s for s in self.binaries.stages if not s.name.startswith("pod-")]
        pod_stages = sorted(POD_STAGES.glob("pod-*.yaml"))
        if not pod_stages:
            raise FileNotFoundError(f"no kwok pod stages in {POD_STAGES}")
        return [*node_stages, *pod_stages]

    def _wait_healthy(self, proc: procs.Process, url: str, *, tls: bool = True) -> None:
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=str(self._pki.ca.cert))
            admin = self._pki.directory
            context.load_cert_chain(admin / "admin.crt", admin / "admin.key")

        def healthy() -> bool:
            if not proc.alive():
                raise ComponentDied(proc)
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        try:
            wait_for(healthy, timeout=START_TIMEOUT, what=f"{proc.name} at {url}", interval=0.1)
        except WaitTimeout as exc:
            raise RuntimeError(f"{exc}\n--- {proc.name} log tail ---\n{proc.log_tail()}") from None

    def _bin(self, component: str) -> str:
        assert self.binaries is not None
        return str(self.binaries.path(component))

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        p = self.ports
        proc = self._spawn(
            "etcd",
            [
                self._bin("etcd"),
                "--name=sdworker",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=sdworker=http://127.0.0.1:{p.etcd_peer}",
                # A throwaway single member: fsync buys nothing and costs seconds per test.
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        self._wait_healthy(proc, f"http://127.0.0.1:{p.etcd_client}/health", tls=False)

    def _start_apiserver(self) -> None:
        assert self.workdir is not None
        p, pki = self.ports, self._pki
        proc = self._spawn(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
                "--bind-address=127.0.0.1",
                # Loopback has no default route to derive an address from.
                "--advertise-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={self._serving.cert}",
                f"--tls-private-key-file={self._serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Endpoints may not hold loopback addresses; nothing in-cluster dials the apiserver.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_healthy(proc, f"{self.server}/readyz")

    def _start_controllers(self) -> None:
        assert self.workdir is not None
        assert self.binaries is not None
        p, pki = self.ports, self._pki
        serving = [f"--tls-cert-file={self._serving.cert}", f"--tls-private-key-file={self._serving.key}"]

        def auth_flags(name: str) -> list[str]:
            kc = self._kubeconfigs[name]
            return [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
            ]

        cm = self._spawn(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                *auth_flags("controller-manager"),
                *serving,
                "--bind-address=127.0.0.1",
                f"--secure-port={p.controller_manager}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                # The defaults (20/30) throttle ReplicaSet and GC work in multi-node tests.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"),
                *auth_flags("scheduler"),
                *serving,
                "--bind-address=127.0.0.1",
                f"--secure-port={p.scheduler}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        kwok = self._spawn(
            "kwok",
            [
                self._bin("kwok"),
                f"--kubeconfig={self._kubeconfigs['kwok']}",
                # v0.8.0 has no built-in stages: node-initialize and lease heartbeat shipped with the
                # binary, pod ready/complete/delete from the repo (they skip SD pods).
                "--config=" + ",".join(str(s) for s in self._kwok_stages()),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--manage-single-node=",
                f"--server-address=127.0.0.1:{p.kwok}",
                f"--node-port={p.kwok_node}",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
        )
        self._wait_healthy(cm, f"https://127.0.0.1:{p.controller_manager}/healthz")
        self._wait_healthy(scheduler, f"https://127.0.0.1:{p.scheduler}/healthz")
        self._wait_healthy(kwok, f"http://127.0.0.1:{p.kwok}/healthz", tls=False)
        # Healthz says the process is up; a "default" ServiceAccount says the controllers work.
        wait_for(
            lambda: (
                "default" in self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            ),
            timeout=START_TIMEOUT,
            what="the controller-manager to create the default ServiceAccount",
            describe=cm.log_tail,
        )

    def restart_apiserver(self, while_down: Callable[[], object] | None = None) -> None:
        """Stop kube-apiserver and start it again on the same etcd, port and certificates (a control-plane
        upgrade or crash); ``while_down`` runs in between. Every client must re-establish its watches."""
        (old,) = [p for p in self._procs if p.name == "kube-apiserver"]
        at = self._procs.index(old)
        old.stop()
        self._procs.remove(old)
        if while_down is not None:
            while_down()
        self._start_apiserver()
        self._procs.insert(at, self._procs.pop())  # stop() keeps the reverse start order


class ComponentDied(Abort):
    def __init__(self, proc: procs.Process) -> None:
        super().__init__(
            f"{proc.name} exited with code {proc.popen.returncode}\n"
            f"--- {proc.name} log tail ---\n{proc.log_tail()}"
        )


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[LocalCluster]:
    with LocalCluster(**kwargs) as cluster:
        yield cluster
