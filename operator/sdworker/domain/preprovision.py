"""Disks before nodes: which Karpenter NodeClaims stand for a node that is coming, and what it will be.

On GCE an instance is RUNNING tens of seconds before its kubelet registers the Node. When Karpenter
launches nodes, its NodeClaim (``karpenter.sh/v1``) says early what the node will be: after the launch
its ``status.providerID`` is ``gce://PROJECT/ZONE/INSTANCE`` and its labels carry the Node's labels
(Karpenter copies the labels the cloud provider returned onto the claim, the zone among them). Karpenter
records the zone and the provider ID together, when the cloud provider's launch returns (for GCE, once
the instance insert is done); earlier a claim's zone is known only if its requirements pin one, and a
disk made then could not be attached yet, so a claim counts from its launch. This module turns such a
claim into the ``NodeInfo`` placement already understands, named as the Node will
be (``status.nodeName`` once known, else the instance name: GCE node names are instance names), so
``placement.place`` yields the very RuntimeDisk (same name, same spec, same node label the agent
watches) that the Node would get, only earlier. The provisioner then creates the disk in the claim's
zone and attaches it to the instance before the kubelet registers; at registration the agent only
mounts, verifies and untaints.

Why the RuntimeDisk itself and not a separate claim record: one object, one name, one lifecycle. The
RuntimeDisk is owned by the NodeClaim until the Node appears; then the Node is added as a second owner
(``adoption``) and ``timings.nodeCreated`` is filled in, so the garbage collector deletes it only when
both are gone and the timeline still starts at node registration. A claim deleted before its node
registers (launch failed, consolidated, interrupted) stops being desired: the operator deletes the
RuntimeDisk and the usual teardown detaches and deletes the disk (or finds it gone with the instance,
as it was attached with ``autoDelete``). Pure: no Kubernetes or cloud calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sdworker.domain.placement import NodeInfo, parse_provider_id

Json = dict[str, Any]

NODECLAIM_GROUP: Final = "karpenter.sh"
NODECLAIM_VERSION: Final = "v1"
NODECLAIM_PLURAL: Final = "nodeclaims"
NODECLAIM_KIND: Final = "NodeClaim"
NODECLAIM_API_VERSION: Final = f"{NODECLAIM_GROUP}/{NODECLAIM_VERSION}"


@dataclass(frozen=True)
class FutureNode:
    """A node that a NodeClaim will register, as placement sees it, and the claim that owns its disks."""

    node: NodeInfo
    claim_name: str
    claim_uid: str


def future_node(claim: Mapping[str, Any]) -> FutureNode | None:
    """What ``claim`` will register, once its instance is known (``status.providerID``); None before
    that, for a claim being deleted, or for a provider ID that is not GCE's."""
    meta = claim.get("metadata") or {}
    status = claim.get("status") or {}
    if meta.get("deletionTimestamp") is not None:
        return None
    instance = parse_provider_id(str(status.get("providerID") or ""))
    if instance is None:
        return None
    name = str(status.get("nodeName") or instance.instance)
    return FutureNode(
        node=NodeInfo(name=name, labels=dict(meta.get("labels") or {}), provider_id=status["providerID"]),
        claim_name=str(meta.get("name", "")),
        claim_uid=str(meta.get("uid", "")),
    )


def future_nodes(claims: Iterable[Mapping[str, Any]], registered: Iterable[str]) -> dict[str, FutureNode]:
    """Future nodes by node name, for claims whose Node is not registered yet (``registered``: the
    names of existing Nodes; a registered node is placed as a Node)."""
    have = set(registered)
    out: dict[str, FutureNode] = {}
    for claim in claims:
        future = future_node(claim)
        if future is not None and future.node.name not in have:
            out[future.node.name] = future
    return out


def claim_owner(future: FutureNode) -> Json:
    """The ownerReference of a RuntimeDisk made for ``future`` before its Node exists."""
    return {
        "apiVersion": NODECLAIM_API_VERSION,
        "kind": NODECLAIM_KIND,
        "name": future.claim_name,
        "uid": future.claim_uid,
    }


def claimed_manifest(manifest: Mapping[str, Any], future: FutureNode) -> Json:
    """``placement.runtimedisk_manifest``'s object, owned by the NodeClaim instead of the Node."""
    out = dict(manifest)
    out["metadata"] = {**manifest["metadata"], "ownerReferences": [claim_owner(future)]}
    return out


@dataclass(frozen=True)
class Adoption:
    """A RuntimeDisk made for a NodeClaim whose Node has registered: its new owners and nodeCreated."""

    name: str
    owner_references: list[Json]
    node_created: str | None


def adoption(rd: Mapping[str, Any], node: Mapping[str, Any]) -> Adoption | None:
    """What to write on RuntimeDisk ``rd`` now that its ``node`` exists; None when nothing is due
    (the Node already owns it)."""
    meta = rd.get("metadata") or {}
    owners = list(meta.get("ownerReferences") or [])
    node_meta = node.get("metadata") or {}
    uid = node_meta.get("uid")
    if not any(o.get("kind") == NODECLAIM_KIND for o in owners):
        return None  # made for a registered Node: it owns the RuntimeDisk already
    if not uid or any(o.get("kind") == "Node" and o.get("uid") == uid for o in owners):
        return None
    node_owner = {"apiVersion": "v1", "kind": "Node", "name": node_meta.get("name", ""), "uid": uid}
    timings = ((rd.get("status") or {}).get("timings")) or {}
    created = node_meta.get("creationTimestamp")
    return Adoption(
        name=str(meta.get("name", "")),
        owner_references=[*owners, node_owner],
        node_created=None if timings.get("nodeCreated") else created,
    )
