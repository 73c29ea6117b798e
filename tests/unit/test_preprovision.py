"""Disks before nodes: a launched Karpenter NodeClaim is placed as the Node it will register.

The NodeClaims here stand in for Karpenter's (``sigs.k8s.io/karpenter`` v1.15.0): ``status.providerID``
and ``status.nodeName`` are fields of ``NodeClaimStatus`` (pkg/apis/v1/nodeclaim_status.go); the
launch copies the labels the cloud provider returned onto the claim (pkg/controllers/nodeclaim/
lifecycle/launch.go, ``PopulateNodeClaimDetails``), which the rig's provider builds in
tools/karpenter/provider.go ``nodeLabels`` (zone, accelerator, instance type, hostname).
"""

from __future__ import annotations

from typing import Any

from sdworker.domain import placement
from sdworker.domain.preprovision import adoption, claimed_manifest, future_node, future_nodes
from tests.unit.test_placement import RESOLVED, T4, node, worker

ZONE = "us-central1-b"
PROVIDER_ID = f"gce://sdworker-demo/{ZONE}/gpu-abc12"


def nodeclaim(
    name: str = "gpu-abc12", *, provider_id: str | None = PROVIDER_ID, deleting: bool = False, **status: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "labels": {**T4, "topology.kubernetes.io/zone": ZONE, "karpenter.sh/nodepool": "gpu"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    st: dict[str, Any] = dict(status)
    if provider_id is not None:
        st["providerID"] = provider_id
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": meta, "status": st}


def test_a_claim_is_a_future_node_once_its_instance_is_known() -> None:
    assert future_node(nodeclaim(provider_id=None)) is None
    future = future_node(nodeclaim())
    assert future is not None
    assert future.node.name == "gpu-abc12"  # the instance name: GCE node names are instance names
    assert future.node.provider_id == PROVIDER_ID
    assert future.node.labels["topology.kubernetes.io/zone"] == ZONE
    assert (future.claim_name, future.claim_uid) == ("gpu-abc12", "uid-gpu-abc12")
    named = future_node(nodeclaim(nodeName="gpu-node-x"))
    assert named is not None
    assert named.node.name == "gpu-node-x"


def test_no_future_node_for_a_deleted_claim_or_another_cloud() -> None:
    assert future_node(nodeclaim(deleting=True)) is None
    assert future_node(nodeclaim(provider_id="kwok://gpu-abc12")) is None


def test_registered_nodes_are_not_future_nodes() -> None:
    claims = [nodeclaim("a", provider_id=f"gce://p-roject/{ZONE}/a"), nodeclaim("b", provider_id=None)]
    assert list(future_nodes(claims, [])) == ["a"]
    assert future_nodes(claims, ["a"]) == {}


def test_the_claims_runtimedisk_is_the_one_its_node_gets() -> None:
    """Same name, spec and node label: the agent of the registered node finds the disk made early."""
    future = future_node(nodeclaim())
    assert future is not None
    early = placement.place([future.node], [worker("a")], RESOLVED)
    later = placement.place([node("gpu-abc12", {**T4}, zone=ZONE)], [worker("a")], RESOLVED)
    assert early.desired == later.desired
    ((name, spec),) = early.desired.items()
    assert spec.zone == ZONE
    assert spec.instance == "gpu-abc12"
    manifest = claimed_manifest(placement.runtimedisk_manifest(name, "gpu-abc12", "", spec.to_dict()), future)
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": "gpu-abc12", "uid": "uid-gpu-abc12"}
    ]
    assert manifest["metadata"]["labels"]["sdworker.dev/node"] == "gpu-abc12"
    assert manifest["metadata"]["finalizers"]  # the usual teardown applies


def test_the_registered_node_adopts_the_claims_runtimedisk_once() -> None:
    claim_owner = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": "c", "uid": "u1"}
    rd: dict[str, Any] = {
        "metadata": {"name": "rd", "ownerReferences": [claim_owner]},
        "status": {"timings": {}},
    }
    registered = {"metadata": {"name": "gpu-abc12", "uid": "n1", "creationTimestamp": "2026-01-01T00:00:09Z"}}
    due = adoption(rd, registered)
    assert due is not None
    assert due.owner_references == [
        claim_owner,
        {"apiVersion": "v1", "kind": "Node", "name": "gpu-abc12", "uid": "n1"},
    ]
    assert due.node_created == "2026-01-01T00:00:09Z"
    rd["metadata"]["ownerReferences"] = due.owner_references
    assert adoption(rd, registered) is None
    node_owned = {"metadata": {"name": "rd", "ownerReferences": [due.owner_references[1]]}}
    assert adoption(node_owned, {"metadata": {"name": "gpu-abc12", "uid": "n2"}}) is None
