"""One chaos scenario's world: the compute simulator, the operator process, kwok nodes with their VMs, agents.

Everything is the real thing the integration tests use (``LocalCluster``, ``ComputeSim``, ``OperatorProcess``,
``AgentProcess`` through ``Harness``); this module only strings them together the way a scenario needs:
nodes added in bulk through the API (as GKE registers them), VMs deleted through the compute API before
their Node goes (as the cluster-autoscaler scales in), and a count of every fault the scenario injects,
for the campaign's table.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.api_core.exceptions as gexc
from google.cloud import compute_v1
from kubernetes import client, config, watch

from sdworker.api import constants as c
from sdworker_images import publish
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import ComputeSim, client_kwargs
from sdworker_tools.computesim.testing import publish_build, wait_operation
from sdworker_tools.nodes import GpuNodeSpec, Taint, gpu_node_manifest
from sdworker_tools.operator_proc import OperatorProcess
from sdworker_tools.wait import wait_for
from tests.integration.test_agent_support import GPU_TAINT, SIM_PROJECT, STARTUP_TAINT, ZONE, Harness
from tests.unit.invalid_specs import valid_sdworker

__all__ = ["GPU_TAINT", "SIM_PROJECT", "STARTUP_TAINT", "ZONE", "World"]

Json = dict[str, Any]
FAMILY = "sd-chaos"


@dataclass
class World:
    """A scenario's cluster objects, simulator and processes; ``harness`` owns nodes, agents and cleanup."""

    cluster: LocalCluster
    api: client.ApiClient
    sim: ComputeSim
    harness: Harness
    operator: OperatorProcess
    rng: random.Random
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    started: float = field(default_factory=time.time)

    @property
    def namespace(self) -> str:
        return self.harness.namespace

    @property
    def label(self) -> str:
        """The operator's ``--cluster-name``: the ``sdworker-cluster`` label of this scenario's disks."""
        return self.harness.suffix

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def selector(self) -> dict[str, str]:
        return {"sdworker.test/harness": self.label}

    # --- image and SDWorker ------------------------------------------------------------------

    def publish(self, build_dir: Path, family: str | None = FAMILY) -> publish.PublishResult:
        """A runtime image, published into this scenario's simulator by the real publisher."""
        return publish_build(self.sim, build_dir, project=SIM_PROJECT, family=family)

    def create_sdworker(self, name: str, *, replicas: int, **runtime: Any) -> None:
        body = valid_sdworker(name, self.namespace)
        body["spec"]["replicas"] = replicas
        body["spec"]["nodeSelector"] = self.selector
        body["spec"]["runtime"].update(
            image=f"projects/{SIM_PROJECT}/global/images/family/{FAMILY}", diskSizeGb=10, prefetch=[]
        )
        body["spec"]["runtime"].update(runtime)
        self.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SDWORKER_PLURAL, body
        )

    def delete_sdworker(self, name: str) -> None:
        with contextlib.suppress(client.ApiException):
            self.custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, c.SDWORKER_PLURAL, name
            )

    def sdworkers(self) -> list[Json]:
        items: list[Json] = self.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SDWORKER_PLURAL
        )["items"]
        return items

    # --- nodes ---------------------------------------------------------------------------------

    def add_nodes(
        self,
        names: Iterable[str],
        *,
        taints: tuple[Taint, ...] = (),
        on_vm: Callable[[str], None] | None = None,
    ) -> list[str]:
        """GPU nodes joining as GKE registers them: the VM first (then ``on_vm``), then its Node (kwok makes
        it Ready)."""
        added = []
        for name in names:
            self.sim.create_instance(name, zone=ZONE, project=SIM_PROJECT)
            if on_vm is not None:
                on_vm(name)
            spec = GpuNodeSpec(name=name, zone=ZONE, project=SIM_PROJECT, taints=taints, labels=self.selector)
            self.core.create_node(gpu_node_manifest(spec))
            self.harness.nodes.append(name)
            added.append(name)
        return added

    def delete_vm(self, name: str) -> None:
        """The VM goes (taking its autoDelete disks) as the autoscaler deletes it; refusals are retried."""
        kw = client_kwargs(self.sim.endpoint)
        instances, ops = compute_v1.InstancesClient(**kw), compute_v1.ZoneOperationsClient(**kw)

        def delete() -> bool:
            try:
                op = instances.delete_unary(project=SIM_PROJECT, zone=ZONE, instance=name)
            except gexc.NotFound:
                return True
            except (gexc.Forbidden, gexc.ServiceUnavailable, gexc.InternalServerError):
                return False  # the shared write quota or an injected fault: the autoscaler retries too
            wait_operation(ops, op, project=SIM_PROJECT, zone=ZONE, timeout=120)
            return True

        wait_for(delete, timeout=180, what=f"deleting VM {name}", interval=0.3)

    def remove_node(self, name: str) -> None:
        """Scale-in of one node: its VM, then its Node object."""
        self.delete_vm(name)
        with contextlib.suppress(client.ApiException):
            self.core.delete_node(name)

    def remove_nodes(self, names: Iterable[str]) -> None:
        for name in names:
            self.remove_node(name)

    def live_nodes(self) -> list[Json]:
        selector = ",".join(f"{k}={v}" for k, v in self.selector.items())
        nodes: list[Json] = self.api.sanitize_for_serialization(
            self.core.list_node(label_selector=selector).items
        )
        return nodes

    # --- RuntimeDisks ------------------------------------------------------------------------------

    def runtimedisks(self) -> list[Json]:
        """Every RuntimeDisk of this scenario's nodes (also those whose Node is already gone)."""
        items: list[Json] = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL)[
            "items"
        ]
        mine = set(self.harness.nodes)
        return [i for i in items if i["spec"]["nodeName"] in mine]

    def phases(self) -> collections.Counter[str]:
        return collections.Counter((d.get("status") or {}).get("phase", "") for d in self.runtimedisks())

    def served(self, phase: str = "Attached") -> bool:
        """Every live node has exactly one RuntimeDisk, in ``phase``, and none is left for a gone node."""
        live = {n["metadata"]["name"] for n in self.live_nodes()}
        rds = self.runtimedisks()
        by_node = collections.Counter(d["spec"]["nodeName"] for d in rds)
        return (
            set(by_node) == live
            and all(v == 1 for v in by_node.values())
            and all((d.get("status") or {}).get("phase") == phase for d in rds)
        )

    def describe(self) -> str:
        rds = self.runtimedisks()
        lines = [
            f"phases {dict(self.phases())}, live nodes {len(self.live_nodes())}, RuntimeDisks {len(rds)}"
        ]
        for d in rds[:8]:
            st = d.get("status") or {}
            lines.append(
                f"  {d['metadata']['name']}: {st.get('phase')} {st.get('reason')}: {st.get('message')}"
            )
        lines.append(f"--- operator (pid {self.operator.pid}) ---\n{self.operator.log_tail(20)}")
        return "\n".join(lines)

    # --- faults --------------------------------------------------------------------------------

    def kill_operator(self) -> None:
        """``kill -9`` of the operator, then a fresh one (as the Deployment's replacement pod)."""
        self.operator.kill()
        self.faults["operator kill -9"] += 1
        self.operator.start()

    def all_faults(self) -> dict[str, int]:
        return {**dict(self.faults), **sim_fault_counts(self.sim)}


def sim_fault_counts(sim: ComputeSim) -> dict[str, int]:
    """What the simulator itself injected or refused, from its request and operation logs."""
    counts: collections.Counter[str] = collections.Counter()
    for r in sim.requests():
        if r.get("fault"):
            counts[f"sim {r['fault']}"] += 1
        elif r.get("status") == 403 and r.get("reason") == "rateLimitExceeded":
            counts["sim 403 rateLimitExceeded"] += 1
    for op in sim.operations():
        if op.get("error"):
            for e in op["error"].get("errors", []):
                counts[f"sim op {e.get('code')}"] += 1
    return dict(counts)


class Kubelet:
    """The one kubelet duty the scenarios need for SD pods, which kwok leaves to the pod runner (see
    ``sdworker_tools.cluster.POD_STAGES``): a pod being deleted is confirmed gone once its containers have
    stopped; here at once, with grace period 0, as the kubelet's status manager does (kubernetes
    pkg/kubelet/status/status_manager.go, ``syncPod``: once ``canBeDeleted``, ``Delete`` with
    ``GracePeriodSeconds: 0``). Without it an SD pod of a deleted SDWorker would hold its node's runtime
    forever (the operator retires a runtime only once no pod uses it)."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.namespace = namespace
        self._api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self.confirmed = 0
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{namespace}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        core = client.CoreV1Api(self._api)
        while not self._stopped.is_set():
            with contextlib.suppress(Exception):  # a dropped watch or a closing client: watch again
                for event in self._watch.stream(core.list_namespaced_pod, self.namespace, timeout_seconds=5):
                    pod = event["object"]
                    if event["type"] != "DELETED" and pod.metadata.deletion_timestamp is not None:
                        with contextlib.suppress(client.ApiException):
                            core.delete_namespaced_pod(
                                pod.metadata.name, self.namespace, grace_period_seconds=0
                            )
                            self.confirmed += 1

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()
        self._thread.join(timeout=15)
        self._api.close()
