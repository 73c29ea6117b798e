"""``sdworker-dev demo``: the whole system on one machine, from nothing to SD replicas on runtime-ready nodes.

What runs, all real except the nodes' kubelets (kwok) and Google's API (the compute API simulator):

1. the control plane (``LocalCluster``: etcd, kube-apiserver, controller-manager, scheduler, kwok);
2. the compute API simulator with a latency profile (``fast`` or ``realistic``, its figures printed);
3. the runtime disk image, built by the real builder from ``examples/runtime-tree`` (cached by content)
   and registered in the simulator under the family ``examples/sdworker.yaml`` names;
4. the CRDs, the operator process (``python -m sdworker run`` with the GCE provider against the simulator)
   and ``examples/sdworker.yaml`` (adapted: replicas = nodes, the warm pool size asked for);
5. the node agent's DaemonSet, RBAC and admission policy from ``daemonset/manifests`` (kwok runs its pods);
6. a **scripted scale-out**: N kwok GPU nodes with the startup taint (each with its simulator VM) join one
   after another. When the DaemonSet's pod runs on a node, an agent process starts for it with that pod's
   identity (a ServiceAccount token bound to the pod, so the real RBAC and admission policy apply), as the
   pod's container would. The real cluster-autoscaler driving the scale-out is not wired in yet; the output
   says so.

Progress lines show nodes joined, RuntimeDisks per phase and SD pods ready; the end is the per-node
cold-start timeline (``sdworker.status_view``). Everything is removed on exit, error or Ctrl-C: agents
(then their mounts), the operator, the simulator (its loop devices), the control plane, the work dir.
``--ci`` exits by itself, with 0 only if every SD replica became Ready on a node whose RuntimeDisk was
Ready first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client, config

from sdworker import manifest as runtime_manifest
from sdworker import status_view
from sdworker.api import constants as c
from sdworker_agent import mountinfo
from sdworker_tools import procs
from sdworker_tools.binaries import ensure_built
from sdworker_tools.chart_png import render_png
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.latency import profile
from sdworker_tools.nodes import Taint
from sdworker_tools.operator_proc import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
PROJECT = "sdworker-demo"  # examples/sdworker.yaml's runtime image project and family
FAMILY = "sd-runtime"
ZONE = "us-central1-a"
CLUSTER_NAME = "demo"
STARTUP_TAINT = Taint(c.STARTUP_TAINT_KEY, c.STARTUP_TAINT_VALUE, c.STARTUP_TAINT_EFFECT)
GPU_TAINT = Taint(c.GPU_RESOURCE, "present", "NoSchedule")
DEMO_PREFIX = "sdworker-demo-"
AGENT_NAMESPACE = "sdworker-system"  # daemonset/manifests' namespace
AGENT_SERVICE_ACCOUNT = "sdworker-agent"
Json = dict[str, Any]


class Interrupted(Exception):  # noqa: N818 - a control signal
    pass


def say(message: str) -> None:
    print(message, flush=True)


def _env_with(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return env


# --- the runtime image ------------------------------------------------------------------------------


def tree_hash(tree: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {os.readlink(path)}\n".encode())
        elif path.is_file():
            h.update(f"F {rel} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    builder = REPO / "images" / "sdworker_images"
    for path in sorted(builder.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_image(tree: Path) -> tuple[Path, str]:
    """``disk.raw`` and its content digest, built once per tree content (and builder version)."""
    cache = Path(os.environ.get("SDWORKER_CACHE", Path.home() / ".cache" / "sdworker")) / "demo-runtime"
    out = cache / tree_hash(tree)
    manifest_file = out / runtime_manifest.MANIFEST_NAME
    if not (out / "disk.raw").is_file() or not manifest_file.is_file():
        say(f"[image] building the runtime disk image from {tree.relative_to(REPO)} (cached in {out})")
        shutil.rmtree(out, ignore_errors=True)
        argv = [sys.executable, "-m", "sdworker_images", "build", "--from-dir", str(tree), "--out", str(out)]
        procs.run([*argv, "--no-pack", "--quiet"], env=_env_with(REPO / "images"), timeout=600)
    else:
        say(f"[image] runtime disk image cached: {out}")
    digest = runtime_manifest.Manifest.from_json(manifest_file.read_bytes()).digest
    return out / "disk.raw", digest


# --- processes ----------------------------------------------------------------------------------------


@dataclass
class Agent:
    node: str
    host_root: Path
    proc: procs.Process
    port: int


@dataclass
class Demo:
    nodes: int
    latency: str
    warm_pool: int
    ci: bool
    interval: float
    timeout: float
    workdir: Path
    chart: Path | None = None
    cluster: LocalCluster | None = None
    sim: ComputeSim | None = None
    operator: OperatorProcess | None = None
    operator_metrics_port: int = 0
    agents: list[Agent] = field(default_factory=list)
    api: client.ApiClient | None = None
    joined: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    # --- set-up --------------------------------------------------------------------------------------

    def start(self) -> None:
        say("[build] control plane and kwok (cached after the first build; progress on stderr)")
        binaries = ensure_built()
        self.cluster = LocalCluster(binaries=binaries, log=say)
        self.cluster.start()
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))

        lat = profile(self.latency)
        self.sim = ComputeSim(SimConfig(latency=self.latency, seed=1)).start()
        ops = lat.operations
        say(
            f"[cloud] compute API simulator on {self.sim.endpoint}, latency profile '{self.latency}': "
            f"disk from image {ops.get('disks.insert', lat.default_s):g}s, "
            f"first disk of an image in a zone +{lat.first_in_zone_s:g}s "
            f"(+{lat.first_in_zone_per_gib_s:g}s/GiB), "
            f"attach {ops.get('instances.attachDisk', lat.default_s):g}s, "
            f"detach {ops.get('instances.detachDisk', lat.default_s):g}s, jitter ±{lat.jitter * 100:.0f}%, "
            f"API call {lat.call_write_s:g}s write / {lat.call_read_s:g}s read; state {self.sim.state_dir}"
        )
        raw, digest = build_image(REPO / "examples" / "runtime-tree")
        image_name = f"sd-runtime-{digest.removeprefix('sha256:')[:12]}"
        self.sim.register_image(
            image_name, raw, project=PROJECT, family=FAMILY, description=f"sdworker-digest={digest}"
        )
        say(f"[image] registered projects/{PROJECT}/global/images/{image_name} (family {FAMILY}), {digest}")

        crds = REPO / "crds"
        self.cluster.kubectl("apply", "--server-side", "-f", str(crds))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        say("[crds] SDWorker and RuntimeDisk installed")
        self.cluster.kubectl("create", "namespace", AGENT_NAMESPACE)
        manifests = REPO / "daemonset" / "manifests"
        for name in ("rbac.yaml", "admission-policy.yaml", "daemonset.yaml"):
            self.cluster.kubectl("apply", "--server-side", "-f", str(manifests / name))
        say(f"[agent] DaemonSet, RBAC and admission policy from daemonset/manifests in {AGENT_NAMESPACE}")

        self.operator = OperatorProcess(
            self.cluster,
            self.workdir / "logs",
            [
                "--cloud=gce",
                f"--compute-endpoint={self.sim.endpoint}",
                "--anonymous-credentials",
                f"--cluster-name={CLUSTER_NAME}",
                "--resync-seconds=10",
            ],
            verbose=False,
        )
        self.operator.start()
        self.operator_metrics_port = self.operator.metrics_port
        say(
            f"[operator] running (pid {self.operator.pid}); metrics on "
            f"http://127.0.0.1:{self.operator_metrics_port}/metrics; log {self.operator.log_path}"
        )

        self.cluster.kubectl("apply", "-f", str(REPO / "examples" / "webui-auth-secret.yaml"))
        sdw = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())
        sdw["spec"]["replicas"] = self.nodes  # one replica per GPU node
        sdw["spec"]["runtime"]["warmPool"] = {"size": self.warm_pool}
        self.cluster.kubectl("apply", "-f", "-", input_text=json.dumps(sdw))
        say(
            f"[sdworker] applied examples/sdworker.yaml (replicas {self.nodes}, warm pool {self.warm_pool}, "
            f"runtime {sdw['spec']['runtime']['image']}, nodes {sdw['spec']['nodeSelector']})"
        )

    # --- nodes and agents ----------------------------------------------------------------------------

    def add_node(self, index: int) -> None:
        assert self.cluster is not None
        assert self.sim is not None
        name = f"gpu-node-{index}"
        say(
            f"[scale-out] SCRIPTED (not the cluster-autoscaler): node {index + 1}/{self.nodes} {name} "
            f"joins {ZONE} with the startup taint"
        )
        self.sim.create_instance(name, zone=ZONE, project=PROJECT)
        self.cluster.add_gpu_node(
            name, zone=ZONE, project=PROJECT, taints=(STARTUP_TAINT, GPU_TAINT), wait_ready=False
        )
        self.joined[name] = time.monotonic()

    def start_agents(self) -> None:
        """An agent process for every joined node whose DaemonSet pod runs, with that pod's identity."""
        assert self.api is not None
        assert self.cluster is not None
        have = {a.node for a in self.agents}
        waiting = [n for n in self.joined if n not in have]
        if not waiting:
            return
        core = client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(
            AGENT_NAMESPACE, label_selector="app.kubernetes.io/name=sdworker-agent"
        )
        for pod in pods.items:
            node = pod.spec.node_name
            if node not in waiting or pod.status.phase != "Running":
                continue
            token = core.create_namespaced_service_account_token(
                AGENT_SERVICE_ACCOUNT,
                AGENT_NAMESPACE,
                {
                    "spec": {
                        "audiences": [],
                        "expirationSeconds": 3600,
                        "boundObjectRef": {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": pod.metadata.name,
                            "uid": pod.metadata.uid,
                        },
                    }
                },
            ).status.token
            kubeconfig = self.cluster.write_token_kubeconfig(
                self.workdir / f"agent-{node}.kubeconfig", token, user=f"agent-{node}"
            )
            self.start_agent(node, kubeconfig)
            say(
                f"[agent] {node}: DaemonSet pod {pod.metadata.name} running; agent started "
                f"with a token bound to it"
            )

    def start_agent(self, node: str, kubeconfig: Path) -> None:
        """The agent process for ``node``, as the container of the DaemonSet's pod there."""
        assert self.sim is not None
        host_root = self.workdir / "hosts" / node
        host_root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        proc = procs.Process(
            f"agent-{node}",
            [
                sys.executable,
                "-m",
                "sdworker_agent",
                f"--node-name={node}",
                f"--kubeconfig={kubeconfig}",
                f"--dev-root={self.sim.dev_root(node)}",
                f"--host-root={host_root}",
                f"--health-address=127.0.0.1:{port}",
                "--resync-seconds=10",
            ],
            self.workdir / "logs" / f"agent-{node}.log",
            env=_env_with(REPO / "daemonset"),
        )
        self.agents.append(Agent(node, host_root, proc, port))

    # --- observing -----------------------------------------------------------------------------------

    def objects(self) -> tuple[list[Json], list[Json], list[Json], list[Json]]:
        assert self.api is not None
        custom = client.CustomObjectsApi(self.api)
        core = client.CoreV1Api(self.api)
        sdws = custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.SDWORKER_PLURAL)["items"]
        rds = custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)["items"]
        pods = self.api.sanitize_for_serialization(
            core.list_namespaced_pod("default", label_selector=f"{c.LABEL_APP_MANAGED_BY}={c.MANAGED_BY}")
        )["items"]
        nodes = self.api.sanitize_for_serialization(core.list_node())["items"]
        return sdws, rds, pods, nodes

    def progress(self, rds: list[Json], pods: list[Json], nodes: list[Json]) -> str:
        phases = Counter((rd.get("status") or {}).get("phase", "Pending") for rd in rds)
        gated = sum(
            any(t["key"] == c.STARTUP_TAINT_KEY for t in (n.get("spec") or {}).get("taints") or [])
            for n in nodes
        )
        ready = sum(_pod_ready(p) is not None for p in pods)
        disks = ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) or "none yet"
        return (
            f"nodes joined {len(self.joined)}/{self.nodes} (gated {gated}) | RuntimeDisks: {disks} | "
            f"SD pods ready {ready}/{self.nodes} (of {len(pods)})"
        )

    def run(self) -> bool:
        self.start()
        next_node, next_at = 0, time.monotonic()
        last = ""
        deadline = time.monotonic() + self.timeout
        scale_started = time.monotonic()
        while True:
            now = time.monotonic()
            if next_node < self.nodes and now >= next_at:
                self.add_node(next_node)
                next_node += 1
                next_at = now + self.interval
            self.start_agents()
            for agent in self.agents:
                if not agent.proc.alive():
                    raise RuntimeError(f"the agent of {agent.node} exited:\n{agent.proc.log_tail(30)}")
            if self.operator is not None and not self.operator.alive():
                raise RuntimeError(f"the operator exited:\n{self.operator.log_tail(40)}")
            sdws, rds, pods, nodes = self.objects()
            line = self.progress(rds, pods, nodes)
            if line != last:
                say(f"[{time.monotonic() - scale_started:6.1f}s] {line}")
                last = line
            if next_node == self.nodes and self.done(sdws, rds, pods):
                break
            if now > deadline:
                say(f"[demo] not done after {self.timeout:.0f}s")
                break
            time.sleep(0.5)
        sdws, rds, pods, nodes = self.objects()
        self.show_timeline(sdws, rds)
        for line in self.metrics_summary():
            say(f"[metrics] {line}")
        ok, report = verify(rds, pods, self.nodes)
        say("")
        for line in report:
            say(f"[check] {line}")
        say(
            f"[demo] {'PASS' if ok else 'FAIL'}: scale-out of {self.nodes} nodes "
            f"in {time.monotonic() - scale_started:.1f}s"
        )
        return ok

    def show_timeline(self, sdws: list[Json], rds: list[Json]) -> None:
        model = status_view.summarize(sdws, rds)
        say("")
        say(status_view.render(model))
        if self.chart is not None:
            if self.chart.suffix == ".svg":
                self.chart.parent.mkdir(parents=True, exist_ok=True)
                self.chart.write_text(status_view.render_svg(model))
            else:
                render_png(model, self.chart)
            say(f"[chart] the timeline as a picture: {self.chart.resolve()}")

    def metrics_summary(self) -> list[str]:
        """A few figures from the operator's /metrics, to show where they come from."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.operator_metrics_port}/metrics", timeout=5
            ) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            return [f"cannot scrape the operator: {err}"]
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

        def mean(name: str, **labels: str) -> str:
            key = tuple(sorted(labels.items()))
            count = values.get((f"{name}_count", key), 0.0)
            return f"{values.get((f'{name}_sum', key), 0.0) / count:.2f}s (n={count:g})" if count else "-"

        calls = Counter[str]()
        for (name, labels), value in values.items():
            if name == "sdworker_cloud_calls_total":
                calls[f"{dict(labels)['method']}={dict(labels)['outcome']}"] += int(value)
        phase = "sdworker_phase_duration_seconds"
        waited = values.get(("sdworker_cloud_write_wait_seconds_total", ()), 0.0)
        return [
            f"operator http://127.0.0.1:{self.operator_metrics_port}/metrics: "
            f"{phase} mean create {mean(phase, phase='create')}, attach {mean(phase, phase='attach')}; "
            f"sdworker_node_ready_seconds mean {mean('sdworker_node_ready_seconds')}",
            "sdworker_cloud_calls_total: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
            f"sdworker_cloud_write_wait_seconds_total {waited:.2f}",
        ]

    def done(self, sdws: list[Json], rds: list[Json], pods: list[Json]) -> bool:
        ready_disks = [rd for rd in rds if (rd.get("status") or {}).get("phase") == "Ready"]
        ready_pods = [p for p in pods if _pod_ready(p) is not None]
        return len(ready_disks) >= self.nodes and len(ready_pods) >= self.nodes

    # --- tear-down -----------------------------------------------------------------------------------

    def stop(self) -> None:
        say(
            "[cleanup] stopping the agents, unmounting, stopping the operator, the simulator "
            "and the control plane"
        )
        for agent in self.agents:
            agent.proc.stop()
        # Agents never unmount when they stop (pods keep using the runtime); the demo's hosts go away.
        for agent in self.agents:
            for m in sorted(_mounts_under(agent.host_root), key=lambda m: -m.mount_id):
                procs.run(["umount", m.mount_point], check=False)
        if self.operator is not None:
            self.operator.stop()
        if self.api is not None:
            self.api.close()
        if self.sim is not None:
            self.sim.stop()  # detaches and frees every loop device
        if self.cluster is not None:
            self.cluster.stop()
        left = [m.mount_point for a in self.agents for m in _mounts_under(a.host_root)]
        shutil.rmtree(self.workdir, ignore_errors=True)
        say("[cleanup] done" + (f"; still mounted: {left}" if left else "; nothing left behind"))


def _mounts_under(root: Path) -> list[mountinfo.Mount]:
    prefix = str(root.resolve()) + "/"
    table = mountinfo.parse(Path("/proc/self/mountinfo").read_bytes())
    return [m for m in table if m.mount_point.startswith(prefix)]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _pod_ready(pod: Json) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _time(cond.get("lastTransitionTime")) or datetime.min
    return None


def _scheduled(pod: Json) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return _time(cond.get("lastTransitionTime"))
    return None


def verify(rds: list[Json], pods: list[Json], replicas: int) -> tuple[bool, list[str]]:
    """Every SD replica Ready, each on a node whose RuntimeDisk was Ready before the pod was placed there."""
    ready_at: dict[str, datetime] = {}
    for rd in rds:
        status = rd.get("status") or {}
        if status.get("phase") != "Ready":
            continue
        timings = status.get("timings") or {}
        moments = [_time(timings.get(k)) for k in ("attached", "mounted", "verified", "prefetched")]
        ready_at[rd["spec"]["nodeName"]] = max(m for m in moments if m is not None)
    report, ok = [], True
    ready_pods = [p for p in pods if _pod_ready(p) is not None]
    if len(ready_pods) < replicas:
        ok = False
        report.append(f"only {len(ready_pods)}/{replicas} SD replicas Ready")
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name, node = pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName") or "-"
        ready, scheduled = _pod_ready(pod), _scheduled(pod)
        disk = ready_at.get(node)
        if ready is None:
            ok = False
            report.append(f"{name} on {node}: not Ready")
        elif disk is None:
            ok = False
            report.append(f"{name} on {node}: Ready, but the node's RuntimeDisk is not Ready")
        elif scheduled is None or scheduled < disk:
            ok = False
            report.append(f"{name} on {node}: placed at {scheduled} before its runtime was Ready at {disk}")
        else:
            report.append(
                f"{name} on {node}: runtime Ready {disk:%H:%M:%S}, pod placed {scheduled:%H:%M:%S}, "
                f"Ready {ready:%H:%M:%S}"
            )
    return ok, report


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleanup must finish even if Ctrl-C is pressed again."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    interval = args.interval if args.interval is not None else (1.0 if args.latency == "fast" else 5.0)
    timeout = args.timeout if args.timeout is not None else (120.0 if args.latency == "fast" else 300.0)
    workdir = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
    demo = Demo(args.nodes, args.latency, args.warm_pool, args.ci, interval, timeout, workdir, args.chart)
    say(
        f"[demo] {args.nodes} GPU nodes, latency '{args.latency}', warm pool {args.warm_pool}; "
        f"work dir {workdir}. "
        "Scale-out is SCRIPTED (nodes are added by this script; the real cluster-autoscaler is not wired in)."
    )
    ok, interrupted = False, False
    with _signals_raise():
        try:
            ok = demo.run()
            if not args.ci:
                assert demo.cluster is not None
                say(
                    f"[demo] still running: export KUBECONFIG={demo.cluster.kubeconfig}; "
                    f"kubectl get sdw,rd; {sys.executable} -m sdworker status. Ctrl-C stops and cleans up."
                )
                while True:
                    time.sleep(1)
        except Interrupted as why:
            interrupted = True
            say(f"[demo] {why}: stopping")
            if demo.api is not None and not ok:
                with contextlib.suppress(Exception), _signals_ignored():
                    demo.show_timeline(*demo.objects()[:2])
        finally:
            with _signals_ignored():
                demo.stop()
    if interrupted and not ok:
        return 130
    return 0 if ok else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="the whole system locally: control plane, simulator, operator, agents")
    p.add_argument("--nodes", type=int, default=3, help="GPU nodes the scripted scale-out adds (default 3)")
    p.add_argument("--latency", choices=["fast", "realistic"], default="realistic", help="simulator profile")
    p.add_argument("--warm-pool", type=int, default=0, help="runtime.warmPool.size (default 0)")
    p.add_argument(
        "--interval", type=float, help="seconds between joining nodes (default 1 fast, 5 realistic)"
    )
    p.add_argument("--timeout", type=float, help="give up after this many seconds of scale-out")
    p.add_argument(
        "--chart",
        type=Path,
        default=Path("out/demo-timeline.png"),
        help="write the timeline chart here: PNG, or SVG for a .svg name (default out/demo-timeline.png)",
    )
    p.add_argument("--ci", action="store_true", help="exit when done: 0 only if every replica came up right")
