"""kwok GPU node manifests look like GKE GPU nodes to the operator and the scheduler."""

from __future__ import annotations

import pytest

from sdworker_tools.nodes import GPU_RESOURCE, GpuNodeSpec, Taint, gpu_node_manifest


def test_gke_shape() -> None:
    m = gpu_node_manifest(GpuNodeSpec(name="n1", zone="europe-west4-b", project="p-123", gpus=4))
    labels = m["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "europe-west4-b"
    assert labels["topology.kubernetes.io/region"] == "europe-west4"
    assert labels["cloud.google.com/gke-accelerator"] == "nvidia-tesla-t4"
    assert m["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert m["spec"]["providerID"] == "gce://p-123/europe-west4-b/n1"
    assert m["status"]["allocatable"][GPU_RESOURCE] == "4"
    assert m["status"]["capacity"] == m["status"]["allocatable"]
    assert m["spec"]["taints"] == []


@pytest.mark.parametrize(
    ("taints", "expected"),
    [
        ((), []),
        ((Taint("a", "b"),), [{"key": "a", "value": "b", "effect": "NoSchedule"}]),
        (
            (Taint("nvidia.com/gpu", "present", "NoExecute"),),
            [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoExecute"}],
        ),
    ],
)
def test_taints(taints: tuple[Taint, ...], expected: list[dict[str, str]]) -> None:
    assert gpu_node_manifest(GpuNodeSpec(name="n", taints=taints))["spec"]["taints"] == expected


def test_extra_labels_override_defaults() -> None:
    m = gpu_node_manifest(
        GpuNodeSpec(name="n", labels={"cloud.google.com/gke-nodepool": "l4-pool", "x": "y"})
    )
    assert m["metadata"]["labels"]["cloud.google.com/gke-nodepool"] == "l4-pool"
    assert m["metadata"]["labels"]["x"] == "y"
