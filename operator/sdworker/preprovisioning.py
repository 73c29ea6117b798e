"""The controller's writes for disks before nodes: RuntimeDisks for Karpenter NodeClaims, then adoption.

``domain.preprovision`` decides (a launched NodeClaim is a future node; a registered node adopts the
RuntimeDisk made for its claim); this module makes the two writes through ``kube.Kube``: create the
RuntimeDisk owned by the NodeClaim (the provisioner then creates and attaches the disk as for any
RuntimeDisk, to the claim's instance), and when the Node registers, add it as an owner and record
``timings.nodeCreated``. The controller calls it from its placement pass, so there is still one
level-triggered loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sdworker.api import constants as c
from sdworker.api.transitions import created
from sdworker.domain import placement
from sdworker.domain.preprovision import FutureNode, adoption, claimed_manifest, future_nodes
from sdworker.kube.client import Kube
from sdworker.kube.status import update_status

log = logging.getLogger("sdworker.preprovisioning")
Json = dict[str, Any]


async def record_created(kube: Kube, name: str, *, message: str, node_created: str | None) -> None:
    """The first status write of a RuntimeDisk just created (``api.transitions.created``).

    The API server ignores ``status`` in a create (the CRD has the status subresource), so creating a
    RuntimeDisk costs the create and this one write; it carries everything known at creation.
    """
    await update_status(
        kube,
        c.RUNTIMEDISK_KIND,
        name,
        lambda obj: created(obj.get("status") or {}, message=message, node_created=node_created),
    )


class Preprovisioning:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @staticmethod
    def future_nodes(claims: Iterable[Json], nodes: Mapping[str, Json]) -> dict[str, FutureNode]:
        """Launched NodeClaims whose Node has not registered, by the node name they will register."""
        return future_nodes(claims, nodes)

    async def create(self, name: str, future: FutureNode, spec: Json) -> None:
        """The RuntimeDisk ``name`` for a node that is not registered yet, owned by its NodeClaim."""
        manifest = claimed_manifest(placement.runtimedisk_manifest(name, future.node.name, "", spec), future)
        if await self.kube.create(manifest) is None:
            return
        log.info(
            "created RuntimeDisk %s for NodeClaim %s before node %s registers",
            name,
            future.claim_name,
            future.node.name,
        )
        message = f"Waiting for a disk; node {future.node.name} is launching (NodeClaim {future.claim_name})"
        await record_created(self.kube, name, message=message, node_created=None)

    async def adopt(self, runtimedisks: Iterable[Json], nodes: Mapping[str, Json]) -> None:
        """Registered nodes take ownership of the RuntimeDisks made for their claims."""
        for rd in runtimedisks:
            if rd.get("metadata", {}).get("deletionTimestamp") is not None:
                continue
            node = nodes.get((rd.get("spec") or {}).get("nodeName", ""))
            due = adoption(rd, node) if node is not None else None
            if due is None:
                continue
            await self.kube.patch(
                c.RUNTIMEDISK_KIND, due.name, {"metadata": {"ownerReferences": due.owner_references}}
            )
            if due.node_created is not None:
                await record_created(self.kube, due.name, message="", node_created=due.node_created)
            log.info("RuntimeDisk %s: its node registered and owns it", due.name)
