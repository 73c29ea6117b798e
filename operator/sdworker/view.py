"""The operator's view of the cluster: kopf's indexes, read as whole observations, and small readers of them.

kopf keeps in-memory indexes of every watched kind (``sdworker.handlers``); the reconcilers decide from them
(level-triggered), never from a single event. This module names the indexes, reads one object or all of
them, and parses the RuntimeDisks once for the readers that need them typed.
"""

from __future__ import annotations

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

    def runtimedisks(self) -> list[RuntimeDisk]:
        out = []
        for body in every(self.indexes.runtimedisks):
            try:
                out.append(parse_runtimedisk(body))
            except SpecError as err:
                log.warning("ignoring malformed RuntimeDisk %s: %s", body["metadata"]["name"], err)
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
