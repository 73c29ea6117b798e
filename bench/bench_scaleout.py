"""Scale-out benchmark: N GPU nodes join; node created -> runtime Ready, sdworker beside the reference.

Why: to show, with figures measured in one run, how much time sdworker adds on top of the cloud's own
latency, how that grows with the number of nodes, and how it compares with what users run today (the
published DaemonSet init, re-created in ``bench/reference/attach-disk.sh``).

Each scenario runs twice against a fresh compute API simulator (latency profile and regional write quota
stated in the results):

* **sdworker**: a fresh control plane (``LocalCluster``), the CRDs, the real operator process
  (``OperatorProcess``), the agent DaemonSet with a real agent process per node (as ``sdworker-dev
  demo`` starts them: a token bound to the node's DaemonSet pod, real loop-device mounts; at 1000 nodes
  the same agents as tasks in a few processes over a SIMULATED mount layer, ``sdworker_tools.simhost``), and
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
    python -m bench.bench_scaleout --full                     # 1, 10, 100, 1000 nodes, realistic (make bench)
    python -m bench.bench_scaleout --scenario pernode-1000 --latency fast   # simulated mount layer
    python -m bench.bench_scaleout --scenario shared-10 --profile --tag before   # py-spy the operator
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from bench import scaleout_report
from bench.scaleout_autoscaled import run_autoscaled
from bench.scaleout_probe import REPO, Baseline, Json, runtime_image, say
from bench.scaleout_reference import run_reference
from bench.scaleout_scenarios import (
    FULL,
    QUICK,
    SCENARIOS,
    SIMULATED_WORKERS,
    Scenario,
    sdworker_manifest,
)
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sdworker.api import constants as c
from sdworker_tools import demo, procs
from sdworker_tools.binaries import ensure_built
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim import gcloud as simgcloud
from sdworker_tools.demo_agents import AGENT_NAMESPACE, Agents, HostedAgents
from sdworker_tools.demo_autoscale import GPU_TAINT, STARTUP_TAINT
from sdworker_tools.demo_image import publish_image
from sdworker_tools.nodes import GpuNodeSpec, gpu_node_manifest
from sdworker_tools.operator_proc import OperatorProcess
from sdworker_tools.wait import wait_for

RESULTS = REPO / "bench" / "results"
PROBE_BUDGET_S = 0.5  # per pass of the join loop: at 1000 nodes, probing every agent would stall it


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
    hosts: str = "loop"  # loop: an agent process per node; simulated: simhost workers, mount layer simulated
    image_mount: Path | None = None  # simulated hosts: the runtime image, mounted read-only once
    _last_rds: list[Json] = field(default_factory=list)

    def start(self) -> None:
        binaries = ensure_built()
        self.cluster = LocalCluster(binaries=binaries, log=say)
        self.cluster.start()
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.sim = ComputeSim(
            SimConfig(
                latency=self.latency,
                seed=1,
                write_quota_per_s=self.quota,
                write_quota_burst=self.quota,
                block_devices=self.hosts == "loop",  # simulated: API only, as the chaos tests run it
            )
        ).start()
        build_dir = runtime_image()
        publish_image(build_dir, self.sim, project=demo.PROJECT, family=demo.FAMILY)
        self.agents = Agents(self.cluster, self.sim, self.api, self.workdir, say)
        if self.hosts == "simulated":
            # One real read-only mount of the image; every node's simulated mount binds it (simhost).
            self.image_mount = Path(tempfile.mkdtemp(prefix="sdworker-bench-image-"))
            procs.run(["mount", "-o", "ro,loop,noload", str(build_dir / "disk.raw"), str(self.image_mount)])
            self.agents.hosted = HostedAgents(
                self.sim.endpoint, self.image_mount, self.workdir, workers=SIMULATED_WORKERS
            )
            self.agents.resync_seconds = 60.0  # the DaemonSet's default; 1000 agents at 10 s = 100 GET Node/s
            (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
            self.agents.hosted.start()
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
        sdw = sdworker_manifest(self.nodes, self.mode, self.warm_pool)
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

    def stop(self) -> None:
        if self.agents is not None and self.agents.hosted is not None:
            self.agents.hosted.stop()  # before the demo's clean-up unmounts each node's (bind) mounts
        super().stop()
        if self.image_mount is not None:
            procs.run(["umount", str(self.image_mount)], check=False)
            shutil.rmtree(self.image_mount, ignore_errors=True)

    def _probe_agents(self) -> None:
        """When each agent first answers /healthz (it is watching its RuntimeDisks): on one shared machine
        many agents start at once, which a real node's DaemonSet pod does on its own CPUs."""
        assert self.agents is not None
        budget = time.monotonic() + PROBE_BUDGET_S
        for agent in self.agents.running:
            if time.monotonic() > budget:
                return
            seen = self.agent_up.get(agent.node)
            if seen is None or len(seen) > 1 or not agent.port:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/healthz", timeout=0.1) as resp:
                    if resp.status == 200:
                        seen.append(time.time())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass

    def runtimedisks(self) -> list[Json]:
        """Every RuntimeDisk now; an overloaded apiserver's refusal or cut-off answer (429, a broken
        1000-item list) is retried on the loop's next pass, so the last good list stands meanwhile."""
        assert self.api is not None
        key = "LIST sdworker.dev/runtimedisks"
        self.kube_calls_own[key] = self.kube_calls_own.get(key, 0) + 1
        try:
            items = client.CustomObjectsApi(self.api).list_cluster_custom_object(
                c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL
            )["items"]
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            if isinstance(err, ApiException) and (err.status or 0) < 429:
                raise
            say(f"[bench] listing RuntimeDisks failed ({type(err).__name__}); the last list stands")
            return self._last_rds
        self._last_rds = list(items)
        return self._last_rds

    def measure(self) -> Json:
        """Join the nodes, wait until every RuntimeDisk is Ready, and collect the raw figures."""
        assert self.sim is not None
        assert self.cluster is not None
        assert self.operator is not None
        base = Baseline.take(self.sim, self.cluster, self.operator.pid)
        spy = self._spy(self.operator.pid, "operator") if self.profile_dir else None
        next_node, next_at = 0, time.monotonic()
        deadline = time.monotonic() + self.timeout
        rds: list[Json] = []
        while True:
            now = time.monotonic()
            # Due times are absolute (start + i * interval): a slow pass of this loop joins every node
            # that fell due meanwhile instead of stretching the ramp.
            due = []
            while next_node < self.nodes and now >= next_at:
                due.append(next_node)
                next_node += 1
                next_at += self.interval if self.join == "ramp" else 0.0
            with ThreadPoolExecutor(16) as pool:  # a burst of 1000 joins at once, not one by one
                list(pool.map(self.add_node, due))
            try:
                self.start_agents()
            except (ApiException, urllib3.exceptions.HTTPError) as err:  # overloaded: next pass
                say(f"[bench] starting agents failed ({type(err).__name__}); trying again")
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
            time.sleep(0.25 if self.nodes <= 100 else 1.0)  # a list of 1000 RuntimeDisks is not free
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(60)
        return base.collect(
            created=self.created,
            rds=rds,
            agents=self.agents,
            agent_up=self.agent_up,
            kube_own=self.kube_calls_own,
        )


def run_sdworker(
    sc: Scenario, latency: str, quota: float, timeout: float, profile_dir: Path | None = None
) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="sdworker-bench-"))
    run = SdworkerRun(
        sc.nodes,
        latency,
        sc.warm_pool,
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
        hosts=sc.hosts,
    )
    try:
        run.start()
        say(f"[bench] {sc.label} sdworker: {sc.nodes} nodes join, warm pool {sc.warm_pool}, mode {sc.mode}")
        return run.measure()
    finally:
        run.stop()


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
    p.add_argument("--hosts", choices=["loop", "simulated"], help="run every scenario's agents this way")
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
    results: list[Json] = []
    failed: list[str] = []
    paths: list[Path] = []
    for name in dict.fromkeys(names):
        try:
            results.append(run_scenario(SCENARIOS[name], args))
        except Exception as exc:  # one scenario's failure must not cost the others' figures
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            say(f"[bench] {name} FAILED: {type(exc).__name__}: {exc}")
            continue
        say(scaleout_report.one_line(results[-1]))
        # Written after every scenario: an unattended run keeps what it measured if a later one fails.
        paths = scaleout_report.write(results, args.out, tag=args.tag)
    if results:
        for path in paths:
            say(f"[bench] wrote {path}")
        say(paths[1].read_text())
    for failure in failed:
        say(f"[bench] FAILED {failure}")
    return 1 if failed or not results else 0


def run_scenario(sc: Scenario, args: argparse.Namespace) -> Json:
    """One scenario, sdworker then its reference, analysed."""
    if args.hosts and args.hosts != sc.hosts:
        sc = dataclasses.replace(sc, hosts=args.hosts, reference=sc.reference and args.hosts == "loop")
    entry: Json = {"scenario": {**sc.__dict__, "label": sc.label}, "latency": args.latency}
    entry["write_quota"] = args.write_quota
    t0 = time.monotonic()
    entry["load_before"] = os.getloadavg()[0]
    spy_dir = args.out / f"profile-{sc.name}{'-' + args.tag if args.tag else ''}" if args.profile else None
    if sc.join == "autoscaler":
        entry["sdworker"] = run_autoscaled(sc, args.latency, args.write_quota, args.timeout)
    else:
        entry["sdworker"] = run_sdworker(sc, args.latency, args.write_quota, args.timeout, spy_dir)
    if spy_dir is not None:
        entry["profile"] = scaleout_report.top_frames(spy_dir / "operator.txt")
    if sc.reference and not args.no_reference:
        entry["reference"] = run_reference(sc, args.latency, args.write_quota, args.timeout)
    entry["wall_s"] = time.monotonic() - t0
    entry["load_after"] = os.getloadavg()[0]
    return scaleout_report.analyse(entry)


if __name__ == "__main__":
    sys.exit(main())
