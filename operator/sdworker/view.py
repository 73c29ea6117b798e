"""The operator's view of the cluster: kopf's indexes, read as whole observations, and small readers of them.

kopf keeps in-memory indexes of every watched kind (``sdworker.handlers``); the reconcilers decide from them
(level-triggered), never from a single event. This module names the indexes, reads one object or all of
them, and parses the RuntimeDisks for the readers that need them typed: once per version of each
(``metadata.resourceVersion``), since the placement pass, the SDWorker reconciles and the phase counts
read all of them on every run (issue 15: at 1000 RuntimeDisks, parsing each one anew on every run was half
the operator's CPU). It also owns the Node projection the index stores (``project_node``): the only Node
fields the operator reads, so 1000 Nodes' images, conditions and managedFields are not kept in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdworker.api import constants as c
from sdworker.api.parse import SpecError, parse_runtimedisk
from sdworker.api.types import RuntimeDisk
from sdworker.domain import placement

log = logging.getLogger("sdworker.view")
Json = dict[str, Any]
# A RuntimeDisk's version: its name, uid and resourceVersion (every write to an object changes the last).
_Version = tuple[str, str, str]
# The Node metadata the operator reads (``node_info``, ``placement_pass``, ``domain.preprovision.adoption``).
_NODE_METADATA = ("name", "uid", "creationTimestamp", "deletionTimestamp", "labels")


@dataclass
class Indexes:
    """kopf's indexes: key -> store of snapshots (one per key for the keys we use)."""

    sdworkers: Mapping[Any, Iterable[Json]]
    nodes: Mapping[Any, Iterable[Json]]
    runtimedisks: Mapping[Any, Iterable[Json]]
    deployments: Mapping[Any, Iterable[Json]]
    # Karpenter's NodeClaims (empty without Karpenter): disks before nodes, ``sdworker.preprovisioning``.
    nodeclaims: Mapping[Any, Iterable[Json]] = dataclasses.field(default_factory=dict)


def one(index: Mapping[Any, Iterable[Json]], key: object) -> Json | None:
    for value in index.get(key, ()):
        return value
    return None


def every(index: Mapping[Any, Iterable[Json]]) -> list[Json]:
    return [v for store in index.values() for v in store]


def pinned(obj: Mapping[str, Any]) -> bool:
    return (obj.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_PIN_RUNTIME) == "true"


def deleting(obj: Mapping[str, Any]) -> bool:
    return obj.get("metadata", {}).get("deletionTimestamp") is not None


def project_node(node: Mapping[str, Any]) -> Json:
    """The part of a Node the operator reads, copied out of kopf's live body: its name, uid, creation and
    deletion time, labels and ``spec.providerID``. Every reader of the nodes index reads only these (the
    unit test ``tests/unit/test_node_projection.py`` drives each reader with both bodies); a status update
    (kwok's heartbeats, the kubelet's conditions) leaves the projection equal, so it marks no work."""
    meta = node.get("metadata") or {}
    kept: Json = {key: meta[key] for key in _NODE_METADATA if key in meta}
    if "labels" in kept:
        kept["labels"] = dict(kept["labels"] or {})
    spec = node.get("spec") or {}
    return {"metadata": kept, "spec": {"providerID": spec["providerID"]} if "providerID" in spec else {}}


def placement_inputs(sdworker: Mapping[str, Any]) -> Json:
    """What the placement pass reads of an SDWorker (``sdworker.placement_pass``): its identity, spec,
    pin and deletion, the runtime its status serves and the one it rolls to. Not the counts its status
    carries, which change with every RuntimeDisk that gets Ready: those need no placement pass."""
    meta = sdworker.get("metadata") or {}
    status = sdworker.get("status") or {}
    return copy.deepcopy(
        {
            "identity": [meta.get("uid"), meta.get("generation")],
            "spec": sdworker.get("spec"),
            "pinned": pinned(sdworker),
            "deleting": deleting(sdworker),
            "runtime": status.get("runtime"),
            "target": (status.get("rollout") or {}).get("target"),
        }
    )


def node_info(node: Mapping[str, Any]) -> placement.NodeInfo:
    return placement.NodeInfo(
        name=node["metadata"]["name"],
        labels=node["metadata"].get("labels") or {},
        provider_id=node.get("spec", {}).get("providerID") or "",
        deleting=deleting(node),
    )


class View:
    """The indexes once kopf has bound them (kopf runs no handler before every index is fully listed)."""

    def __init__(self) -> None:
        self._indexes: Indexes | None = None
        # RuntimeDisk name -> the version last parsed and what it parsed to (None: malformed).
        self._parsed: dict[str, tuple[_Version, RuntimeDisk | None]] = {}

    def bind(self, indexes: Indexes) -> None:
        if self._indexes is None:
            self._indexes = indexes

    @property
    def bound(self) -> bool:
        return self._indexes is not None

    @property
    def indexes(self) -> Indexes:
        assert self._indexes is not None, "indexes are bound before any reconcile"
        return self._indexes

    def runtimedisk(self, body: Mapping[str, Any]) -> RuntimeDisk | None:
        """``body`` parsed (None, with a warning, if it is malformed), once per version: a body without a
        ``resourceVersion`` (never one the API server returned) is parsed every time."""
        meta = body["metadata"]
        name, version = meta["name"], meta.get("resourceVersion")
        key = (name, str(meta.get("uid", "")), str(version))
        hit = self._parsed.get(name)
        if version and hit is not None and hit[0] == key:
            return hit[1]
        parsed: RuntimeDisk | None = None
        try:
            parsed = parse_runtimedisk(body)
        except SpecError as err:
            log.warning("ignoring malformed RuntimeDisk %s: %s", name, err)
        if version:
            self._parsed[name] = (key, parsed)
        return parsed

    def runtimedisks(self) -> list[RuntimeDisk]:
        """Every well-formed RuntimeDisk in the index; forgets the parses of those no longer there."""
        bodies = every(self.indexes.runtimedisks)
        out = [rd for rd in map(self.runtimedisk, bodies) if rd is not None]
        present = {body["metadata"]["name"] for body in bodies}
        if not present.issuperset(self._parsed):
            self._parsed = {k: v for k, v in self._parsed.items() if k in present}
        return out

    def owners_of(self, runtimedisk: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The SDWorkers whose status counts ``runtimedisk``: those serving or rolling to its runtime, and
        those that record no runtime yet (their first runtime may be this one)."""
        runtime_id = (runtimedisk.get("spec") or {}).get("runtimeId")
        keys = []
        for key, store in self.indexes.sdworkers.items():
            for body in store:
                status = body.get("status") or {}
                recorded = (status.get("runtime") or {}).get("runtimeId")
                target = ((status.get("rollout") or {}).get("target") or {}).get("runtimeId")
                if recorded is None or runtime_id in (recorded, target):
                    keys.append(key)
        return keys
