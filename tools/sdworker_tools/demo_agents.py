"""The demo's node agents: one process per node whose DaemonSet pod runs, as that pod's container would be.

kwok runs the agent DaemonSet's pods on every node (Karpenter's or the scripted fallback's) but runs no
container; ``Agents.start_for`` starts the agent process for each node whose pod is Running, with that
pod's identity (a ServiceAccount token bound to the pod, so the real RBAC and admission policy apply), its
host root ``hosts/<node>`` (the directory the pod runner treats as the node's filesystem) and the
simulator's ``/dev`` of the node's instance. ``retire`` stops one and unmounts what it mounted (agents never
unmount when they stop: pods keep using the runtime, but the demo's hosts go away).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from sdworker_agent import mountinfo
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.computesim import ComputeSim
from sdworker_tools.demo_image import env_with

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
class Agents:
    cluster: LocalCluster
    sim: ComputeSim
    api: client.ApiClient
    workdir: Path
    say: Callable[[str], None]
    running: list[Agent] = field(default_factory=list)
    retired: list[Agent] = field(default_factory=list)

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
            self.start(node, kubeconfig)
            self.say(
                f"[agent] {node}: DaemonSet pod {pod.metadata.name} running; agent started "
                f"with a token bound to it"
            )

    def start(self, node: str, kubeconfig: Path) -> None:
        """The agent process for ``node``, as the container of the DaemonSet's pod there."""
        host_root = self.workdir / "hosts" / node
        host_root.mkdir(parents=True, exist_ok=True)  # the pod runner runs SD pods of this node from now
        port = free_port()
        started = time.time()
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
            env=env_with(REPO / "daemonset"),
        )
        self.running.append(Agent(node, host_root, proc, port, started))

    def check_alive(self) -> None:
        for agent in self.running:
            if not agent.proc.alive():
                raise RuntimeError(f"the agent of {agent.node} exited:\n{agent.proc.log_tail(30)}")

    def retire(self, agent: Agent) -> None:
        """Stop an agent and unmount what it mounted."""
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
