"""``sdworker-dev demo``: the whole system on one machine, from nothing to SD replicas on runtime-ready nodes.

What runs, all real except the nodes' kubelets (kwok; the pod runner for SD pods) and Google's API (the
compute API simulator; Karpenter's GCE-shaped provider launches its instances there):

1. the control plane (``LocalCluster``: etcd, kube-apiserver, controller-manager, scheduler, kwok) and the
   pod runner, which runs every SD pod as a real process (``sdworker_tools.podrunner``);
2. the compute API simulator with a latency profile (``fast`` or ``realistic``, its figures printed);
3. the runtime disk image: the example tree with the faithful stand-in webui (``demo_image``), built with
   ``sdworker image build`` and published with ``sdworker image publish`` into the family
   ``examples/sdworker.yaml`` follows (both cached by content);
4. Karpenter (``--autoscaler karpenter``, the default; ``sdworker_tools.karpenter``) with the rig's GPU
   NodePool, whose ``startupTaints`` carry our startup taint;
5. the CRDs, the operator process (``python -m sdworker run`` with the GCE provider against the simulator;
   ``--no-preprovision`` turns off making disks before nodes) and ``examples/sdworker.yaml`` (adapted:
   the warm pool size asked for);
6. the node agent's DaemonSet, RBAC and admission policy from ``daemonset/manifests`` (kwok runs its pods);
7. the **scale-out**: ``replicas`` goes from 0 to N; the SD pods stay Pending, Karpenter turns them into
   NodeClaims, simulator instances and kwok Nodes with the startup taint (``demo_autoscale``); the
   operator makes each node's RuntimeDisk (from the NodeClaim, before the node registers). When the
   DaemonSet's pod runs on a node, an agent process starts for it with that pod's identity (a
   ServiceAccount token bound to the pod, so the real RBAC and admission policy apply), as the pod's
   container would; it mounts, verifies and removes the taint. ``--autoscaler scripted`` is the fallback:
   the script joins N nodes itself, and says so;
8. the **scale-in** (``--ci`` or ``--scale-in``, Karpenter only): ``replicas`` 0, Karpenter consolidates
   the emptied nodes, their instances and disks go, every RuntimeDisk and its finalizers are released.

SD pods become Ready only when their readiness probe passes on the real process (the model loaded); then
each is asked, through its port, what a user would ask (``journey.check_serving``).

Progress lines show NodeClaims and nodes, RuntimeDisks per phase and SD pods ready; then the per-node
cold-start timeline (``sdworker.status_view``) and node registered -> runtime Ready. Everything is
removed on exit, error or Ctrl-C: Karpenter, agents (then their mounts), the operator, the simulator
(its loop devices), the control plane, the work dir.
``--ci`` exits by itself, with 0 only if every SD replica became Ready on a node whose RuntimeDisk was
Ready first, each answered as a user expects, and (Karpenter) the scale-in left nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from kubernetes import client, config

from sdworker.api import constants as c
from sdworker_tools import procs
from sdworker_tools.binaries import ensure_built
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim.latency import profile
from sdworker_tools.demo_agents import AGENT_NAMESPACE, Agents
from sdworker_tools.demo_autoscale import (
    ScaleIn,
    ScriptedNodes,
    describe_registration,
    first_seen,
    karpenter_nodes,
    karpenter_progress,
    scale_in,
)
from sdworker_tools.demo_image import build_image, publish_image, standin_tree
from sdworker_tools.demo_report import metrics_summary, pod_ready, serving_report, timeline, verify
from sdworker_tools.journey import Credentials
from sdworker_tools.karpenter import Karpenter
from sdworker_tools.operator_proc import OperatorProcess
from sdworker_tools.podrunner import PodRunner

REPO = Path(__file__).resolve().parents[2]
PROJECT = "sdworker-demo"  # examples/sdworker.yaml's runtime image project and family
FAMILY = "sd-runtime"
ZONE = "us-central1-a"
CLUSTER_NAME = "demo"
SDWORKER = ("default", "sd-webui")  # examples/sdworker.yaml's namespace and name
DEMO_PREFIX = "sdworker-demo-"
Json = dict[str, Any]


def say(message: str) -> None:
    print(message, flush=True)


# --- processes ----------------------------------------------------------------------------------------


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
    autoscaler: str = "karpenter"  # karpenter | scripted
    scale_in_too: bool = False  # --scale-in: scale in after the scale-out (always with --ci)
    preprovision: bool = True
    boot_s: float | None = None  # Karpenter's VM boot time; None: the latency profile's
    cluster: LocalCluster | None = None
    sim: ComputeSim | None = None
    karpenter: Karpenter | None = None
    scripted: ScriptedNodes | None = None
    operator: OperatorProcess | None = None
    operator_metrics_port: int = 0
    agents: Agents | None = None
    runner_log: TextIO | None = None
    runner: PodRunner | None = None
    credentials: Credentials | None = None
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
        (self.workdir / "hosts").mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.runner_log = runner_log = (self.workdir / "logs" / "podrunner.log").open("a", buffering=1)
        self.runner = PodRunner(
            self.cluster.kubeconfig,
            hosts_dir=self.workdir / "hosts",
            log=lambda line: print(line, file=runner_log),
        )
        self.runner.start()
        say(
            "[pods] pod runner started: SD pods run as real processes (own mount and network namespaces, "
            "the kubelet's volume, user and probe rules); kwok fakes every other pod"
        )

        lat = profile(self.latency)
        self.sim = ComputeSim(SimConfig(latency=self.latency, seed=1)).start()
        self.agents = Agents(self.cluster, self.sim, self.api, self.workdir, say)
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
        build_dir, digest = build_image(standin_tree(), log=say)
        image = publish_image(build_dir, self.sim, project=PROJECT, family=FAMILY)
        say(f"[image] published {image} (family {FAMILY}) with sdworker image publish, {digest}")

        if self.autoscaler == "karpenter":
            self.karpenter = Karpenter(
                self.cluster,
                self.sim,
                self.workdir / "logs",
                project=PROJECT,
                cluster_name=CLUSTER_NAME,
                boot_s=self.boot_s,
                consolidate_after="0s" if self.latency == "fast" else None,
                gpu_limit=max(self.nodes, 8),  # the rig's NodePool allows 8 GPUs: room for every replica
            ).start()
            pool = next(d for d in self.karpenter.config if d["kind"] == "NodePool")
            say(
                f"[karpenter] {self.karpenter.build.version if self.karpenter.build else ''} running "
                f"(log {self.workdir / 'logs' / 'karpenter.log'}): NodePool {pool['metadata']['name']}, "
                f"startupTaints {[t['key'] for t in self.karpenter.startup_taints]}, consolidation "
                f"{pool['spec']['disruption']['consolidationPolicy']} after "
                f"{pool['spec']['disruption']['consolidateAfter']}, VM boot {self.karpenter.boot_s:g}s"
            )
        else:
            self.scripted = ScriptedNodes(
                self.cluster, self.sim, self.nodes, self.interval, ZONE, PROJECT, say
            )
        crds = REPO / "crds"
        self.cluster.kubectl("apply", "--server-side", "-f", str(crds))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        say("[crds] SDWorker and RuntimeDisk installed")
        self.cluster.kubectl("create", "namespace", AGENT_NAMESPACE)
        manifests = REPO / "daemonset" / "manifests"
        for name in ("rbac.yaml", "admission-policy.yaml", "daemonset.yaml"):
            self.cluster.kubectl("apply", "--server-side", "-f", str(manifests / name))
        say(f"[agent] DaemonSet, RBAC and admission policy from daemonset/manifests in {AGENT_NAMESPACE}")

        self.start_operator()

        secret_file = REPO / "examples" / "webui-auth-secret.yaml"
        self.cluster.kubectl("apply", "-f", str(secret_file))
        self.credentials = Credentials.from_secret(yaml.safe_load(secret_file.read_text()))
        sdw = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())
        # One replica per GPU node; with an autoscaler, replicas rise from 0 when the scale-out starts.
        replicas = self.nodes if self.scripted else 0
        sdw["spec"]["replicas"] = replicas
        sdw["spec"]["runtime"]["warmPool"] = {"size": self.warm_pool}
        self.cluster.kubectl("apply", "-f", "-", input_text=json.dumps(sdw))
        say(
            f"[sdworker] applied examples/sdworker.yaml (replicas {replicas}, warm pool {self.warm_pool}, "
            f"runtime {sdw['spec']['runtime']['image']}, nodes {sdw['spec']['nodeSelector']})"
        )

    def start_operator(self, preprovision: bool | None = None) -> None:
        """(Re)start the operator; ``preprovision`` changes whether it makes disks before nodes."""
        assert self.cluster is not None
        assert self.sim is not None
        if preprovision is not None:
            self.preprovision = preprovision
        args = [
            "--cloud=gce",
            f"--compute-endpoint={self.sim.endpoint}",
            "--anonymous-credentials",
            f"--cluster-name={CLUSTER_NAME}",
            "--resync-seconds=10",
            "--preprovision" if self.preprovision else "--no-preprovision",
        ]
        if self.operator is None:
            self.operator = OperatorProcess(self.cluster, self.workdir / "logs", args, verbose=False)
        else:
            self.operator.stop()  # a restart logs to its own file (operator-<n>.log)
            self.operator.extra_args = args
        self.operator.start()
        self.operator_metrics_port = self.operator.metrics_port
        say(
            f"[operator] running (pid {self.operator.pid}; disks before nodes "
            f"{'on' if self.preprovision else 'off'}); metrics on "
            f"http://127.0.0.1:{self.operator_metrics_port}/metrics; log {self.operator.log_path}"
        )

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
        ready = sum(pod_ready(p) is not None for p in pods)
        disks = ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) or "none yet"
        source = (
            karpenter_progress(self.karpenter, nodes)
            if self.karpenter is not None
            else f"nodes joined (scripted) {len(self.joined)}/{self.nodes}"
        )
        return (
            f"{source} (gated {gated}) | RuntimeDisks: {disks} | "
            f"SD pods ready {ready}/{self.nodes} (of {len(pods)})"
        )

    def set_replicas(self, replicas: int) -> None:
        assert self.api is not None
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            c.GROUP, c.VERSION, SDWORKER[0], c.SDWORKER_PLURAL, SDWORKER[1], {"spec": {"replicas": replicas}}
        )

    def observe_nodes(self) -> None:
        """Nodes the autoscaler made (or the script adds now): each gets its agent once its pod runs."""
        if self.scripted is not None:
            first_seen(self.joined, self.scripted.step())
        elif self.api is not None:
            for name in first_seen(self.joined, karpenter_nodes(client.CoreV1Api(self.api))):
                say(f"[scale-out] Karpenter: node {name} registered with the startup taint")

    def scale_out(self) -> bool:
        """Bring ``nodes`` SD replicas up (raising replicas for Karpenter); True when all are Ready."""
        if self.karpenter is not None:
            self.set_replicas(self.nodes)
            say(f"[scale-out] replicas 0 -> {self.nodes}: SD pods Pending until Karpenter's nodes are ready")
        last = ""
        started = time.monotonic()
        deadline = started + self.timeout
        while True:
            self.observe_nodes()
            assert self.agents is not None
            self.agents.start_for(self.joined)
            self.agents.check_alive()
            if self.operator is not None and not self.operator.alive():
                raise RuntimeError(f"the operator exited:\n{self.operator.log_tail(40)}")
            if self.karpenter is not None and self.karpenter.proc and not self.karpenter.proc.alive():
                raise RuntimeError(f"karpenter exited:\n{self.karpenter.log_tail(40)}")
            sdws, rds, pods, nodes = self.objects()
            line = self.progress(rds, pods, nodes)
            if line != last:
                say(f"[{time.monotonic() - started:6.1f}s] {line}")
                last = line
            if (self.scripted is None or self.scripted.finished) and self.done(sdws, rds, pods):
                say(f"[scale-out] {self.nodes} replicas Ready in {time.monotonic() - started:.1f}s")
                return True
            if time.monotonic() > deadline:
                say(f"[demo] not done after {self.timeout:.0f}s")
                return False
            time.sleep(0.5)

    def report(self) -> tuple[bool, list[str]]:
        """The timeline, the metrics and the checks of the replicas now Ready."""
        sdws, rds, pods, _ = self.objects()
        self.show_timeline(sdws, rds, pods)
        for line in metrics_summary(self.operator_metrics_port):
            say(f"[metrics] {line}")
        mode = "on" if self.preprovision else "off"
        timing = describe_registration(rds, self.agents.started() if self.agents else {})
        say(f"[timing] {timing} (disks before nodes {mode})")
        ok, report = verify(rds, pods, self.nodes)
        served, serving = self.check_serving(pods)
        return ok and served, [*report, *serving]

    def scale_in(self) -> ScaleIn:
        """replicas 0 -> Karpenter consolidates -> nothing left; the agents of the nodes gone stop."""
        assert self.api is not None
        assert self.karpenter is not None
        result = scale_in(self.api, self.karpenter, SDWORKER, project=PROJECT, timeout=self.timeout, say=say)
        if self.agents is not None:
            self.agents.retire_all_but(karpenter_nodes(client.CoreV1Api(self.api)))
        return result

    def run(self) -> bool:
        self.start()
        started = time.monotonic()
        ok = self.scale_out()
        ok, report = self.report() if ok else (False, ["scale-out not done"])
        if self.karpenter is not None and (self.ci or self.scale_in_too):
            out = self.scale_in()
            ok, report = ok and out.ok, [*report, *out.report]
        say("")
        for line in report:
            say(f"[check] {line}")
        how = "Karpenter" if self.karpenter is not None else "SCRIPTED fallback"
        say(
            f"[demo] {'PASS' if ok else 'FAIL'}: scale-out of {self.nodes} replicas ({how}) "
            f"in {time.monotonic() - started:.1f}s"
        )
        return ok

    def check_serving(self, pods: list[Json]) -> tuple[bool, list[str]]:
        """Each Ready SD pod, through its port: ready with the model; API and UI behind credentials."""
        if self.runner is None or self.credentials is None:
            return False, ["no pod runner"]
        return serving_report(self.runner.forward, pods, self.credentials)

    def show_timeline(self, sdws: list[Json], rds: list[Json], pods: list[Json] | None = None) -> None:
        for line in timeline(sdws, rds, pods or [], self.chart):
            say(line)

    def done(self, sdws: list[Json], rds: list[Json], pods: list[Json]) -> bool:
        ready_disks = [rd for rd in rds if (rd.get("status") or {}).get("phase") == "Ready"]
        ready_pods = [p for p in pods if pod_ready(p) is not None]
        return len(ready_disks) >= self.nodes and len(ready_pods) >= self.nodes

    # --- tear-down -----------------------------------------------------------------------------------

    def stop(self) -> None:
        say(
            "[cleanup] stopping the agents, unmounting, stopping the operator, the simulator "
            "and the control plane"
        )
        if self.karpenter is not None:
            self.karpenter.stop()  # no launches or deletions while the rest goes
        if self.runner is not None:
            self.runner.stop()  # the SD pods' processes first: they use the runtimes the agents mounted
        if self.runner_log is not None:
            self.runner_log.close()
        if self.agents is not None:
            self.agents.retire_all_but(())
        if self.operator is not None:
            self.operator.stop()
        if self.api is not None:
            self.api.close()
        if self.sim is not None:
            self.sim.stop()  # detaches and frees every loop device
        if self.cluster is not None:
            self.cluster.stop()
        left = self.agents.left_mounted() if self.agents is not None else []
        shutil.rmtree(self.workdir, ignore_errors=True)
        say("[cleanup] done" + (f"; still mounted: {left}" if left else "; nothing left behind"))


def main(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    interval = args.interval if args.interval is not None else (1.0 if args.latency == "fast" else 5.0)
    timeout = args.timeout if args.timeout is not None else (120.0 if args.latency == "fast" else 300.0)
    workdir = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
    if args.boot_seconds is not None and args.boot_seconds < 0:
        raise SystemExit("--boot-seconds must be >= 0")
    demo = Demo(
        args.nodes,
        args.latency,
        args.warm_pool,
        args.ci,
        interval,
        timeout,
        workdir,
        args.chart,
        autoscaler=args.autoscaler,
        scale_in_too=args.scale_in,
        preprovision=args.preprovision,
        boot_s=args.boot_seconds,
    )
    how = (
        "Scale-out through Karpenter (pending SD pods -> NodeClaims -> instances -> nodes)"
        if args.autoscaler == "karpenter"
        else "Scale-out is the SCRIPTED fallback (nodes are added by this script, not by an autoscaler)"
    )
    say(
        f"[demo] {args.nodes} SD replicas on GPU nodes, latency '{args.latency}', "
        f"warm pool {args.warm_pool}; work dir {workdir}. {how}."
    )
    ok, interrupted = False, False
    with procs.signals_raise():
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
        except procs.Interrupted as why:
            interrupted = True
            say(f"[demo] {why}: stopping")
            if demo.api is not None and not ok:
                with contextlib.suppress(Exception), procs.signals_ignored():
                    sdws, rds, pods, _ = demo.objects()
                    demo.show_timeline(sdws, rds, pods)
        finally:
            with procs.signals_ignored():
                demo.stop()
    if interrupted and not ok:
        return 130
    return 0 if ok else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="the whole system locally: control plane, simulator, operator, agents")
    p.add_argument("--nodes", type=int, default=3, help="SD replicas, one per GPU node (default 3)")
    p.add_argument(
        "--autoscaler",
        choices=["karpenter", "scripted"],
        default="karpenter",
        help="where nodes come from: Karpenter (default) or the scripted fallback",
    )
    p.add_argument(
        "--scale-in", action="store_true", help="scale in after the scale-out (Karpenter; always with --ci)"
    )
    p.add_argument(
        "--preprovision",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the operator makes runtime disks from NodeClaims, before nodes register (default on)",
    )
    p.add_argument(
        "--boot-seconds", type=float, help="Karpenter VMs' boot time (default 0 fast, 30 realistic)"
    )
    p.add_argument("--latency", choices=["fast", "realistic"], default="realistic", help="simulator profile")
    p.add_argument("--warm-pool", type=int, default=0, help="runtime.warmPool.size (default 0)")
    p.add_argument(
        "--interval", type=float, help="scripted: seconds between nodes (default 1 fast, 5 realistic)"
    )
    p.add_argument("--timeout", type=float, help="give up after this many seconds of scale-out")
    p.add_argument(
        "--chart",
        type=Path,
        default=Path("out/demo-timeline.png"),
        help="write the timeline chart here: PNG, or SVG for a .svg name (default out/demo-timeline.png)",
    )
    p.add_argument("--ci", action="store_true", help="exit when done: 0 only if every replica came up right")
