"""What the scale-out benchmark reads off the running system: process CPU and peak RSS, the apiserver's
request counters, the simulator's operation and request logs, and the runtime image every run mounts.

Shared by the sdworker runner (``bench/bench_scaleout.py``) and the reference's
(``bench/scaleout_reference.py``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.demo_agents import Agents
from sdworker_tools.demo_image import build_image

REPO = Path(__file__).resolve().parents[1]
Json = dict[str, Any]


def say(message: str) -> None:
    print(message, flush=True)


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


@dataclass(frozen=True)
class Baseline:
    """The counters when a scale-out starts; ``collect`` takes the run's raw figures as deltas from them."""

    sim: ComputeSim
    cluster: LocalCluster
    operator_pid: int
    requests: int
    operations: int
    kube: dict[str, float]
    operator_cpu: float
    started: float

    @classmethod
    def take(cls, sim: ComputeSim, cluster: LocalCluster, operator_pid: int) -> Baseline:
        return cls(
            sim,
            cluster,
            operator_pid,
            max((r["seq"] for r in sim_get(sim, "requests")), default=0),
            len(sim_get(sim, "operations")),
            apiserver_requests(cluster),
            proc_stats(operator_pid)[0],
            time.time(),
        )

    def collect(
        self,
        *,
        created: dict[str, float],
        rds: list[Json],
        agents: Agents | None,
        agent_up: dict[str, list[float]] | None = None,
        kube_own: dict[str, int] | None = None,
        operations: list[Json] | None = None,
    ) -> Json:
        """The raw figures ``scaleout_report.analyse`` reads (``kube_own``: this script's own API calls)."""
        finished = time.time()
        op_cpu, op_rss = proc_stats(self.operator_pid)
        pids = {a.proc.pid for a in agents.running} if agents else set()
        stats = [proc_stats(pid) for pid in pids]  # simulated hosts: a worker process holds many agents
        own = kube_own or {}
        kube1 = apiserver_requests(self.cluster)
        kube = {k: v - self.kube.get(k, 0.0) - own.get(k, 0) for k, v in kube1.items()}
        return {
            "started": self.started,
            "finished": finished,
            "created": created,
            "agent_up": agent_up or {},
            "runtimedisks": [rd for rd in rds if rd["spec"]["nodeName"] in created],
            "operations": operations
            if operations is not None
            else sim_get(self.sim, "operations", self.operations),
            "requests": sim_get(self.sim, "requests", self.requests),
            "kube_calls": {k: v for k, v in sorted(kube.items()) if v > 0},
            "operator": {"cpu_s": op_cpu - self.operator_cpu, "peak_rss_mb": op_rss},
            "agents": {
                "count": len(agents.running) if agents else 0,
                "processes": len(stats),
                "cpu_s_total": sum(s[0] for s in stats),
                "peak_rss_mb_max": max((s[1] for s in stats), default=0.0),
            },
            "sim_config": sim_profile(self.sim),
        }
