"""The demo's node agents: one process per node whose DaemonSet pod runs, as that pod's container would be.

kwok runs the agent DaemonSet's pods on every node (Karpenter's or the scripted fallback's) but runs no
container; ``Agents.start_for`` starts the agent process for each node whose pod is Running, with that
pod's identity (a ServiceAccount token bound to the pod, so the real RBAC and admission policy apply), its
host root ``hosts/<node>`` (the directory the pod runner treats as the node's filesystem) and the
simulator's ``/dev`` of the node's instance. ``retire`` stops one and unmounts what it mounted (agents never
unmount when they stop: pods keep using the runtime, but the demo's hosts go away). With ``hosted`` set
(the 1000-node benchmark) the same agents run as tasks in a few ``sdworker_tools.simhost`` processes over a
simulated mount layer instead of one process each.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from sdworker_agent import mountinfo
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.demo_image import env_with
from sdworker_tools.simhost import agent_argv

REPO = Path(__file__).resolve().parents[2]
AGENT_NAMESPACE = "sdworker-system"  # daemonset/manifests' namespace
AGENT_SERVICE_ACCOUNT = "sdworker-agent"


@dataclass
class Agent:
    node: str
    host_root: Path
    proc: procs.Process
    port: int
    started: float  # epoch seconds: when the DaemonSet pod's container would have started


@dataclass
class HostedAgents:
    """``workers`` processes that each run many agents over the simulated mount layer (``simhost``)."""

    sim_url: str
    image_mount: Path  # the runtime image, mounted read-only once (bind-mounted for every node)
    workdir: Path
    workers: int = 4
    processes: list[procs.Process] = field(default_factory=list)
    count: int = 0

    def start(self) -> None:
        for i in range(self.workers):
            spool = self.workdir / "spool" / str(i)
            spool.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "sdworker_tools.simhost", f"--sim={self.sim_url}"]
            argv += [f"--image-mount={self.image_mount}", f"--spool={spool}"]
            log = self.workdir / "logs" / f"simhost-{i}.log"
            self.processes.append(procs.Process(f"simhost-{i}", argv, log, env=env_with(REPO / "daemonset")))

    def add(self, node: str, argv: list[str]) -> procs.Process:
        """Hand one agent to a worker (round robin); the worker starts it within 0.2 s."""
        index = self.count % self.workers
        self.count += 1
        spool = self.workdir / "spool" / str(index)
        tmp = spool / f"{node}.tmp"
        tmp.write_text(json.dumps({"node": node, "argv": argv}))
        tmp.rename(spool / f"{node}.json")
        return self.processes[index]

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()


@dataclass
class Agents:
    cluster: LocalCluster
    sim: ComputeSim
    api: client.ApiClient
    workdir: Path
    say: Callable[[str], None]
    running: list[Agent] = field(default_factory=list)
    retired: list[Agent] = field(default_factory=list)
    hosted: HostedAgents | None = None  # run agents over the simulated mount layer (simhost)
    resync_seconds: float = 10.0

    def start_for(self, nodes: Iterable[str]) -> None:
        """An agent process for every node of ``nodes`` whose DaemonSet pod runs and has none yet."""
        have = {a.node for a in self.running} | {a.node for a in self.retired}
        waiting = [n for n in nodes if n not in have]
        if not waiting:
            return
        core = client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(
            AGENT_NAMESPACE, label_selector="app.kubernetes.io/name=sdworker-agent"
        )
        due = [p for p in pods.items if p.spec.node_name in waiting and p.status.phase == "Running"]
        # Token requests in parallel: a burst of 1000 nodes would otherwise queue its agents behind them.
        with ThreadPoolExecutor(8) as pool:
            kubeconfigs = list(pool.map(lambda pod: self._pod_kubeconfig(core, pod), due))
        for pod, kubeconfig in zip(due, kubeconfigs, strict=True):
            self.start(pod.spec.node_name, kubeconfig)
            self.say(
                f"[agent] {pod.spec.node_name}: DaemonSet pod {pod.metadata.name} running; agent started "
                f"with a token bound to it"
            )

    def _pod_kubeconfig(self, core: client.CoreV1Api, pod: client.V1Pod) -> Path:
        """A kubeconfig with a ServiceAccount token bound to the agent's DaemonSet pod."""
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
        node = pod.spec.node_name
        return self.cluster.write_token_kubeconfig(
            self.workdir / f"agent-{node}.kubeconfig", token, user=f"agent-{node}"
        )

    def start(self, node: str, kubeconfig: Path) -> None:
        """The agent process for ``node``, as the container of the DaemonSet's pod there."""
        host_root = self.workdir / "hosts" / node
        host_root.mkdir(parents=True, exist_ok=True)  # the pod runner runs SD pods of this node from now
        # Hosted: the kernel picks the health port (1000 free_port() picks race with the agents' own
        # connections); such agents are not probed.
        port = 0 if self.hosted is not None else free_port()
        started = time.time()
        argv = agent_argv(node, kubeconfig, self.sim.dev_root(node), host_root, port, self.resync_seconds)
        if self.hosted is not None:
            proc = self.hosted.add(node, argv)
        else:
            proc = procs.Process(
                f"agent-{node}",
                [sys.executable, "-m", "sdworker_agent", *argv],
                self.workdir / "logs" / f"agent-{node}.log",
                env=env_with(REPO / "daemonset"),
            )
        self.running.append(Agent(node, host_root, proc, port, started))

    def check_alive(self) -> None:
        for agent in self.running:
            if not agent.proc.alive():
                raise RuntimeError(f"the agent of {agent.node} exited:\n{agent.proc.log_tail(30)}")

    def retire(self, agent: Agent) -> None:
        """Stop an agent and unmount what it mounted (a hosted agent stops with its worker)."""
        if self.hosted is None:
            agent.proc.stop()
        for m in sorted(mounts_under(agent.host_root), key=lambda m: -m.mount_id):
            procs.run(["umount", m.mount_point], check=False)
        self.running.remove(agent)
        self.retired.append(agent)

    def retire_all_but(self, nodes: Iterable[str]) -> None:
        keep = set(nodes)
        for agent in [a for a in self.running if a.node not in keep]:
            self.retire(agent)

    def started(self) -> dict[str, float]:
        """When each node's agent started (epoch seconds), by node."""
        return {a.node: a.started for a in [*self.running, *self.retired]}

    def left_mounted(self) -> list[str]:
        return [m.mount_point for a in [*self.running, *self.retired] for m in mounts_under(a.host_root)]


def mounts_under(root: Path) -> list[mountinfo.Mount]:
    prefix = str(root.resolve()) + "/"
    table = mountinfo.parse(Path("/proc/self/mountinfo").read_bytes())
    return [m for m in table if m.mount_point.startswith(prefix)]
