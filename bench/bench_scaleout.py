"""Scale-out benchmark: N GPU nodes join; node created -> runtime Ready, sdworker beside the reference.

Why: to show, with figures measured in one run, how much time sdworker adds on top of the cloud's own
latency, how that grows with the number of nodes, and how it compares with what users run today (the
published DaemonSet init, re-created in ``bench/reference/attach-disk.sh``).

Each scenario runs twice against a fresh compute API simulator (latency profile and regional write quota
stated in the results):

* **sdworker**: a fresh control plane (``LocalCluster``), the CRDs, the real operator process
  (``OperatorProcess``), the agent DaemonSet with a real agent process per node (as ``sdworker-dev
  demo`` starts them: a token bound to the node's DaemonSet pod, real loop-device mounts), and
  ``examples/sdworker.yaml`` (mode, warm pool, replicas = nodes). Nodes join **scripted** (created by
  this script, burst or ramp; no autoscaler), each with its simulator instance first, as on GKE.
* **reference**: one ``attach-disk.sh`` per node, all in parallel, driving the real ``gcloud`` CLI against
  the simulator, then its mount step. No Kubernetes (the script needs none); its clock starts at the node's
  creation, so the DaemonSet pod's scheduling and image pull are not charged to it.

Per node: the phases (from the RuntimeDisk's sub-second timings, or the script's marks), the cloud floor
(what the simulator spent on the node's own operations after the node existed: ``/_sim/operations``), the
overhead (observed - floor), cloud calls (``/_sim/requests``); per run: Kubernetes API calls
(``apiserver_request_total`` deltas), CPU seconds and peak RSS of the operator and agents (``/proc``), or of
the reference's gcloud processes (``getrusage``). ``bench/scaleout_report.py`` turns it into the table and
the plots. Run from the repository root:

    python -m bench.bench_scaleout --quick --latency fast     # 1 and 10 nodes (make bench-quick)
    python -m bench.bench_scaleout --full                     # 1, 10, 100 nodes, realistic (make bench)
    python -m bench.bench_scaleout --scenario shared-10 --profile --tag before   # py-spy the operator
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from bench import scaleout_report
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from sdworker.api import constants as c
from sdworker_tools import demo, procs
from sdworker_tools.binaries import ensure_built
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim import gcloud as simgcloud
from sdworker_tools.demo_agents import AGENT_NAMESPACE, Agents
from sdworker_tools.demo_autoscale import GPU_TAINT, STARTUP_TAINT
from sdworker_tools.demo_image import build_image, publish_image
from sdworker_tools.nodes import GpuNodeSpec, gpu_node_manifest
from sdworker_tools.operator_proc import OperatorProcess
from sdworker_tools.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
REFERENCE_SCRIPT = REPO / "bench" / "reference" / "attach-disk.sh"
Json = dict[str, Any]
MODES = {"pernode": "PerNode", "pool": "PerNode", "shared": "SharedReadOnly"}


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: int
    mode: str  # pernode | pool (warm pool of `nodes` disks) | shared
    join: str = "burst"  # burst: all at once; ramp: one every `interval` s
    interval: float = 0.0
    reference: bool = True  # the published DaemonSet has no shared mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"scenario {self.name}: mode must be one of {sorted(MODES)}")


def _scenarios() -> dict[str, Scenario]:
    out = {}
    for n in (1, 10, 100):
        join, interval = ("ramp", 0.25) if n >= 100 else ("burst", 0.0)
        out[f"pernode-{n}"] = Scenario(f"pernode-{n}", n, "pernode", join, interval)
        out[f"pool-{n}"] = Scenario(f"pool-{n}", n, "pool", join, interval)
        out[f"shared-{n}"] = Scenario(f"shared-{n}", n, "shared", join, interval, reference=False)
    return out


SCENARIOS = _scenarios()
QUICK = ("pernode-1", "pernode-10", "pool-10", "shared-10")
FULL = ("pernode-1", "pool-1", "pernode-10", "pool-10", "shared-10", "pernode-100", "pool-100", "shared-100")


def say(message: str) -> None:
    print(message, flush=True)


# --- measuring processes ------------------------------------------------------------------------------


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (its own and its reaped children's, e.g. mount and fsck) and peak RSS in MB."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(v) for v in fields[11:15]) / ticks  # utime stime cutime cstime
    hwm = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:")), 0)
    return cpu, hwm / 1024


def apiserver_requests(cluster: LocalCluster) -> dict[str, float]:
    """``apiserver_request_total`` keyed ``VERB group/resource[/subresource]``."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(cluster.kubectl("get", "--raw", "/metrics")):
        if fam.name != "apiserver_request":
            continue
        for s in fam.samples:
            if s.name != "apiserver_request_total":
                continue
            lb = s.labels
            key = f"{lb.get('verb')} {lb.get('group') or 'core'}/{lb.get('resource')}"
            key += f"/{lb['subresource']}" if lb.get("subresource") else ""
            out[key] = out.get(key, 0.0) + s.value
    return out


def sim_get(sim: ComputeSim, what: str, since: int = 0) -> list[Json]:
    with urllib.request.urlopen(f"{sim.endpoint}/_sim/{what}?since={since}", timeout=30) as resp:
        return list(json.loads(resp.read())[what])


def sim_profile(sim: ComputeSim) -> Json:
    with urllib.request.urlopen(f"{sim.endpoint}/_sim/config", timeout=30) as resp:
        return dict(json.loads(resp.read()))


_IMAGE: list[Path] = []


def runtime_image() -> Path:
    """The demo's runtime image, built (or found in the cache) once per benchmark run, so every run of
    every scenario mounts the same image even while the builder's sources change."""
    if not _IMAGE:
        _IMAGE.append(build_image(REPO / "examples" / "runtime-tree")[0])
    return _IMAGE[0]


# --- sdworker ------------------------------------------------------------------------------------------


@dataclass
class SdworkerRun(demo.Demo):
    """The demo's rig (its agents, observation and clean-up), with the benchmark's set-up and joins."""

    mode: str = "pernode"
    quota: float = 25.0
    join: str = "burst"
    created: dict[str, float] = field(default_factory=dict)  # node -> epoch seconds before its create
    profile_dir: Path | None = None  # py-spy the operator during the scale-out (collapsed stacks)
    agent_up: dict[str, list[float]] = field(default_factory=dict)  # node -> [spawned, /healthz 200] (epoch)
    kube_calls_own: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        binaries = ensure_built()
        self.cluster = LocalCluster(binaries=binaries, log=say)
        self.cluster.start()
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.sim = ComputeSim(
            SimConfig(
                latency=self.latency, seed=1, write_quota_per_s=self.quota, write_quota_burst=self.quota
            )
        ).start()
        build_dir = runtime_image()
        publish_image(build_dir, self.sim, project=demo.PROJECT, family=demo.FAMILY)
        self.agents = Agents(self.cluster, self.sim, self.api, self.workdir, say)
        self.cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        self.cluster.kubectl("create", "namespace", AGENT_NAMESPACE)
        for name in ("rbac.yaml", "admission-policy.yaml", "daemonset.yaml"):
            self.cluster.kubectl("apply", "--server-side", "-f", str(REPO / "daemonset" / "manifests" / name))
        self.operator = OperatorProcess(
            self.cluster,
            self.workdir / "logs",
            [
                "--cloud=gce",
                f"--compute-endpoint={self.sim.endpoint}",
                "--anonymous-credentials",
                f"--cluster-name={demo.CLUSTER_NAME}",
                "--resync-seconds=10",
                f"--write-quota={self.quota:g}",
            ],
            verbose=False,
        )
        self.operator.start()
        self.cluster.kubectl("apply", "-f", str(REPO / "examples" / "webui-auth-secret.yaml"))
        sdw = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())
        sdw["spec"]["replicas"] = self.nodes
        sdw["spec"]["runtime"]["mode"] = MODES[self.mode]
        sdw["spec"]["runtime"]["warmPool"] = {"size": self.warm_pool}
        self.cluster.kubectl("apply", "-f", "-", input_text=json.dumps(sdw))
        if self.warm_pool:
            # The operator keeps a pool in the zones where matching nodes are (sdworker.domain.pool): a
            # seed node, not measured, stands for the GPU node already running there.
            self.add_node(-1, measured=False)

            def seeded() -> bool:
                self.start_agents()
                rds = self.runtimedisks()
                return (
                    any((rd.get("status") or {}).get("phase") == "Ready" for rd in rds) and self._pool_ready()
                )

            wait_for(
                seeded, timeout=600, what=f"the seed node Ready and {self.warm_pool} warm-pool disks READY"
            )

    def _pool_ready(self) -> bool:
        assert self.sim is not None
        disks = self.sim.inventory().get("disks") or []
        ready = [
            d for d in disks if str(d.get("name", "")).startswith("sdwp-") and d.get("status") == "READY"
        ]
        return len(ready) >= self.warm_pool

    def add_node(self, index: int, *, measured: bool = True) -> None:
        assert self.sim is not None
        assert self.api is not None
        name = f"gpu-node-{index}" if measured else "gpu-node-seed"
        self.sim.create_instance(name, zone=demo.ZONE, project=demo.PROJECT)
        manifest = gpu_node_manifest(
            GpuNodeSpec(name, zone=demo.ZONE, project=demo.PROJECT, taints=(STARTUP_TAINT, GPU_TAINT))
        )
        if measured:
            self.created[name] = time.time()
        client.CoreV1Api(self.api).create_node(manifest)
        self.joined[name] = time.monotonic()

    def _spy(self, pid: int, name: str) -> subprocess.Popen[bytes]:
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking"]
        out = self.profile_dir / f"{name}.txt"
        log = (self.profile_dir / f"{name}.py-spy.log").open("wb")
        with log:
            return subprocess.Popen([*argv, "-o", str(out)], stdout=log, stderr=subprocess.STDOUT)

    def start_agents(self) -> None:
        assert self.agents is not None
        self.agents.start_for(self.joined)
        for agent in self.agents.running:
            self.agent_up.setdefault(agent.node, [agent.started])

    def _probe_agents(self) -> None:
        """When each agent first answers /healthz (it is watching its RuntimeDisks): on one shared machine
        many agents start at once, which a real node's DaemonSet pod does on its own CPUs."""
        assert self.agents is not None
        for agent in self.agents.running:
            seen = self.agent_up.get(agent.node)
            if seen is None or len(seen) > 1:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/healthz", timeout=0.1) as resp:
                    if resp.status == 200:
                        seen.append(time.time())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass

    def runtimedisks(self) -> list[Json]:
        assert self.api is not None
        key = "LIST sdworker.dev/runtimedisks"
        self.kube_calls_own[key] = self.kube_calls_own.get(key, 0) + 1
        items = client.CustomObjectsApi(self.api).list_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL
        )["items"]
        return list(items)

    def measure(self) -> Json:
        """Join the nodes, wait until every RuntimeDisk is Ready, and collect the raw figures."""
        assert self.sim is not None
        assert self.cluster is not None
        assert self.operator is not None
        req0 = max((r["seq"] for r in sim_get(self.sim, "requests")), default=0)
        ops0 = len(sim_get(self.sim, "operations"))
        kube0 = apiserver_requests(self.cluster)
        op_cpu0, _ = proc_stats(self.operator.pid)
        spy = self._spy(self.operator.pid, "operator") if self.profile_dir else None
        started = time.time()
        next_node, next_at = 0, time.monotonic()
        deadline = time.monotonic() + self.timeout
        rds: list[Json] = []
        while True:
            now = time.monotonic()
            # Due times are absolute (start + i * interval): a slow pass of this loop joins every node
            # that fell due meanwhile instead of stretching the ramp.
            while next_node < self.nodes and now >= next_at:
                self.add_node(next_node)
                next_node += 1
                next_at += self.interval if self.join == "ramp" else 0.0
            self.start_agents()
            self._probe_agents()
            assert self.agents is not None
            self.agents.check_alive()
            if not self.operator.alive():
                raise RuntimeError(f"the operator exited:\n{self.operator.log_tail(40)}")
            rds = self.runtimedisks()
            ready = sum(
                (rd.get("status") or {}).get("phase") == "Ready" and rd["spec"]["nodeName"] in self.created
                for rd in rds
            )
            if next_node == self.nodes and ready >= self.nodes:
                break
            if now > deadline:
                say(f"[bench] not done after {self.timeout:.0f}s: {ready}/{self.nodes} Ready")
                break
            time.sleep(0.25)
        finished = time.time()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(60)
        op_cpu, op_rss = proc_stats(self.operator.pid)
        agents = [proc_stats(a.proc.pid) for a in self.agents.running] if self.agents else []
        kube1 = apiserver_requests(self.cluster)
        kube = {k: v - kube0.get(k, 0.0) - self.kube_calls_own.get(k, 0) for k, v in kube1.items()}
        return {
            "started": started,
            "finished": finished,
            "created": self.created,
            "agent_up": self.agent_up,
            "runtimedisks": [rd for rd in rds if rd["spec"]["nodeName"] in self.created],
            "operations": sim_get(self.sim, "operations", ops0),
            "requests": sim_get(self.sim, "requests", req0),
            "kube_calls": {k: v for k, v in sorted(kube.items()) if v > 0},
            "operator": {"cpu_s": op_cpu - op_cpu0, "peak_rss_mb": op_rss},
            "agents": {
                "count": len(agents),
                "cpu_s_total": sum(a[0] for a in agents),
                "peak_rss_mb_max": max((a[1] for a in agents), default=0.0),
            },
            "sim_config": sim_profile(self.sim),
        }


def run_sdworker(
    sc: Scenario, latency: str, quota: float, timeout: float, profile_dir: Path | None = None
) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="sdworker-bench-"))
    pool = sc.nodes if sc.mode == "pool" else 0
    run = SdworkerRun(
        sc.nodes,
        latency,
        pool,
        True,
        sc.interval,
        timeout,
        workdir,
        None,
        mode=sc.mode,
        quota=quota,
        join=sc.join,
        profile_dir=profile_dir,
        autoscaler="scripted",
    )
    try:
        run.start()
        say(
            f"[bench] {sc.name} sdworker: {sc.nodes} nodes join ({sc.join}), warm pool {pool}, mode {sc.mode}"
        )
        return run.measure()
    finally:
        run.stop()


# --- the reference -------------------------------------------------------------------------------------


def _create_pool_disks(sim: ComputeSim, image: str, count: int) -> None:
    """The reference's pool: ``sd-lib-disk-*`` disks left free by earlier nodes (made through the API)."""
    for i in range(count):
        body = json.dumps({"name": f"sd-lib-disk-pool-{i}", "sizeGb": "30", "sourceImage": image}).encode()
        url = f"{sim.api_base}projects/{demo.PROJECT}/zones/{demo.ZONE}/disks"
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, data=body, method="POST"), timeout=30
                ):
                    break
            except urllib.error.HTTPError as err:
                if err.code != 403:  # 403: over the write quota; try again
                    raise
                time.sleep(0.2)

    def ready() -> bool:
        disks = sim.inventory().get("disks") or []
        names = [str(d.get("name", "")) for d in disks if d.get("status") == "READY"]
        return sum(n.startswith("sd-lib-disk-pool-") for n in names) >= count

    wait_for(ready, timeout=600, what=f"{count} reference pool disks READY")


def run_reference(sc: Scenario, latency: str, quota: float, timeout: float) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="sdworker-bench-ref-"))
    sim = ComputeSim(
        SimConfig(latency=latency, seed=1, write_quota_per_s=quota, write_quota_burst=quota)
    ).start()
    mounts: list[Path] = []
    try:
        build_dir = runtime_image()
        image = publish_image(build_dir, sim, project=demo.PROJECT, family=demo.FAMILY)
        image_name = image.rsplit("/", 1)[-1]
        env = simgcloud.write_config(workdir / "gcloud", sim.api_base, demo.PROJECT)
        if sc.mode == "pool":
            _create_pool_disks(sim, image, sc.nodes)
        req0 = max((r["seq"] for r in sim_get(sim, "requests")), default=0)
        ops0 = len(sim_get(sim, "operations"))
        rusage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        say(f"[bench] {sc.name} reference: {sc.nodes} attach-disk.sh in parallel ({sc.join})")
        running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        created: dict[str, float] = {}
        started = time.time()
        for i in range(sc.nodes):
            name = f"gpu-node-{i}"
            sim.create_instance(name, zone=demo.ZONE, project=demo.PROJECT)
            mount_dir = workdir / "hosts" / name / "var" / "lib" / "runtime-lib"
            mounts.append(mount_dir)
            marks = workdir / f"marks-{name}"
            log = (workdir / f"ref-{name}.log").open("wb")
            created[name] = time.time()
            proc = subprocess.Popen(
                ["bash", str(REFERENCE_SCRIPT)],
                env={
                    **env,
                    "MY_NODE_NAME": name,
                    "IMAGE_NAME": image_name,
                    "DEV_ROOT": str(sim.dev_root(name)),
                    "MOUNT_DIR": str(mount_dir),
                    "MARKS": str(marks),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            running.append((name, proc, marks))
            if sc.join == "ramp":
                time.sleep(sc.interval)
        for name, proc, _ in running:
            try:
                proc.wait(timeout=max(1.0, timeout - (time.time() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                say(f"[bench] reference {name} not done after {timeout:.0f}s")
        finished = time.time()
        rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
        nodes = {}
        for name, proc, marks in running:
            steps = [ln.split() for ln in marks.read_text().splitlines()] if marks.exists() else []
            nodes[name] = {"rc": proc.returncode, "marks": [[s, float(t)] for s, t in steps]}
        return {
            "started": started,
            "finished": finished,
            "created": created,
            "nodes": nodes,
            "operations": sim_get(sim, "operations", ops0),
            "requests": sim_get(sim, "requests", req0),
            "gcloud": {
                "cpu_s_total": (rusage.ru_utime + rusage.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime),
                "peak_rss_mb_max": rusage.ru_maxrss / 1024,
            },
            "sim_config": sim_profile(sim),
        }
    finally:
        for m in mounts:
            if m.is_dir() and os.path.ismount(m):
                procs.run(["umount", str(m)], check=False)
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable")
    p.add_argument("--quick", action="store_true", help=f"the quick set: {', '.join(QUICK)}")
    p.add_argument("--full", action="store_true", help=f"the full set: {', '.join(FULL)}")
    p.add_argument("--latency", choices=["fast", "realistic"], default="realistic")
    p.add_argument(
        "--write-quota", type=float, default=25.0, help="regional writes/s (simulator and operator)"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per run")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. before/after a change)")
    p.add_argument("--profile", action="store_true", help="py-spy the operator (results/profile-SCENARIO)")
    args = p.parse_args(argv)
    names = list(args.scenario or ())
    names += list(QUICK) if args.quick else []
    names += list(FULL) if args.full else []
    if not names:
        p.error("name scenarios with --scenario, or --quick / --full")
    if not shutil.which(simgcloud.GCLOUD) and not args.no_reference:
        raise SystemExit("the reference needs the gcloud CLI (or pass --no-reference)")
    random.seed(1)
    results = []
    for name in dict.fromkeys(names):
        sc = SCENARIOS[name]
        entry: Json = {"scenario": sc.__dict__, "latency": args.latency, "write_quota": args.write_quota}
        t0 = time.monotonic()
        spy_dir = (
            args.out / f"profile-{sc.name}{'-' + args.tag if args.tag else ''}" if args.profile else None
        )
        entry["sdworker"] = run_sdworker(sc, args.latency, args.write_quota, args.timeout, spy_dir)
        if spy_dir is not None:
            entry["profile"] = scaleout_report.top_frames(spy_dir / "operator.txt")
        if sc.reference and not args.no_reference:
            entry["reference"] = run_reference(sc, args.latency, args.write_quota, args.timeout)
        entry["wall_s"] = time.monotonic() - t0
        results.append(scaleout_report.analyse(entry))
        say(scaleout_report.one_line(results[-1]))
    paths = scaleout_report.write(results, args.out, tag=args.tag)
    for path in paths:
        say(f"[bench] wrote {path}")
    say(paths[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
