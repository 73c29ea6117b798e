"""Manifests of kwok-simulated GKE GPU nodes.

A kwok node is a plain Node object that kwok (started with the ``kwok.x-k8s.io/node=fake``
annotation selector) keeps Ready and whose pods it reports Running. We shape it like a GKE GPU
node: zone/region labels, the GKE accelerator and node-pool labels, a ``gce://`` providerID that
the operator parses into project/zone/instance, and ``nvidia.com/gpu`` capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class GpuNodeSpec:
    """What differs between simulated GPU nodes; the rest is a fixed GKE-like shape."""

    name: str
    zone: str = "us-central1-a"
    project: str = "sdworker-test"
    accelerator: str = "nvidia-tesla-t4"
    gpus: int = 1
    node_pool: str = "gpu-pool"
    machine_type: str = "n1-standard-8"
    taints: Sequence[Taint] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    @property
    def provider_id(self) -> str:
        return f"gce://{self.project}/{self.zone}/{self.name}"


def gpu_node_manifest(spec: GpuNodeSpec) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "topology.kubernetes.io/zone": spec.zone,
        "topology.kubernetes.io/region": spec.region,
        "node.kubernetes.io/instance-type": spec.machine_type,
        "cloud.google.com/gke-nodepool": spec.node_pool,
        "cloud.google.com/gke-accelerator": spec.accelerator,
        **spec.labels,
    }
    resources = {
        "cpu": "8",
        "memory": "30Gi",
        "pods": "110",
        "ephemeral-storage": "100Gi",
        GPU_RESOURCE: str(spec.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "providerID": spec.provider_id,
            "taints": [t.to_dict() for t in spec.taints],
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "Container-Optimized OS (kwok)",
                "kernelVersion": "kwok",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
            "phase": "Running",
        },
    }
