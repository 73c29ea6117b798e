"""The warm pool: ready, unattached cloud disks per (zone, runtime) that a new node claims instead of
waiting for a disk to be created from the image.

Owns the claim (a label update guarded by the disk's label fingerprint, so two nodes never claim the same
disk), the background refill to each pool's target size (``domain.pool`` decides the targets) and the
deletion of pool disks of runtimes nobody wants any more. Disks nobody claims at all are the orphan
sweeper's (``sdworker.orphan_sweep``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdworker.api import naming
from sdworker.api.parse import SpecError, parse_sdworker
from sdworker.api.types import RuntimeDiskSpec
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import LABEL_NODE, LABEL_POOL, LABEL_RUNTIME, CloudProvider, Disk, DiskRequest
from sdworker.domain.pool import PoolKey, PoolTarget
from sdworker.metrics import Metrics
from sdworker.orphan_sweep import cluster_disk_labels
from sdworker.provisioning import gce_label

log = logging.getLogger("sdworker.warm_pool")


def any_pool_wanted(sdworkers: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of these SDWorker objects may want a warm pool (one it cannot parse counts as wanting
    one, so a pool is never drained by mistake). With none, every pool disk is an orphan: the sweeper's,
    even in zones the refill has not seen."""
    for body in sdworkers:
        try:
            if parse_sdworker(body).spec.runtime.warm_pool.size > 0:
                return True
        except SpecError:
            return True
    return False


@dataclass
class RefillReport:
    """What one refill did: pool disks created, and pool disks of unwanted runtimes deleted."""

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


class WarmPool:
    """Claims, refills and drains the warm-pool disks of this cluster."""

    def __init__(self, cloud: CloudProvider, *, cluster: str, metrics: Metrics | None = None) -> None:
        self.cloud = cloud
        self.cluster = cluster
        self.metrics = metrics if metrics is not None else Metrics()
        # Pool disks a claim of this process is labelling right now. Concurrent claims (one per new node,
        # side by side in the work queue) each take a different disk instead of all queueing for the first
        # one, where the k-th claimer waited out k-1 setLabels operations (the client's per-disk lock) and
        # lost k-1 fingerprint races before it won one (bench pool-10, realistic profile: claims done 1.4 s
        # apart, the 10th 15.9 s after its node).
        # The label fingerprint still decides between processes (another replica, a restart).
        self._claiming: set[str] = set()

    async def claim(self, spec: RuntimeDiskSpec) -> str | None:
        """Take a ready pool disk for ``spec``'s node; ``None`` when the pool is empty."""
        pool = await self.cloud.list_disks(
            spec.project,
            spec.zone,
            {**cluster_disk_labels(self.cluster), LABEL_POOL: gce_label(spec.runtime_id)},
        )
        for disk in sorted(pool, key=lambda d: d.name):
            if disk.status != "READY" or disk.users or disk.size_gb < spec.disk_size_gb:
                continue
            if disk.name in self._claiming:
                continue  # another node's claim is taking it
            labels = {k: v for k, v in disk.labels.items() if k != LABEL_POOL}
            labels[LABEL_NODE] = gce_label(spec.node_name)
            self._claiming.add(disk.name)
            try:
                await self.cloud.set_labels(
                    spec.project, spec.zone, disk.name, labels, disk.label_fingerprint
                )
            except CloudError as err:
                if err.reason == "LabelFingerprintMismatch":
                    continue  # someone claimed it first
                raise
            finally:
                self._claiming.discard(disk.name)
            log.info("node %s claimed warm-pool disk %s", spec.node_name, disk.name)
            return disk.name
        return None

    async def refill(
        self, targets: Mapping[PoolKey, PoolTarget], zones: Iterable[tuple[str, str]]
    ) -> RefillReport:
        """Bring every pool to its target size and delete pool disks of runtimes no longer wanted.

        ``zones``: (project, zone) pairs to look after besides the targets' (where unwanted pools may be).
        """
        report = RefillReport()
        sizes: dict[tuple[str, str], int] = {}
        for project, zone in sorted(set(zones) | {(k.project, k.zone) for k in targets}):
            disks = await self.cloud.list_disks(project, zone, cluster_disk_labels(self.cluster))
            names = {d.name for d in disks}
            pools: dict[str, list[Disk]] = {}
            for disk in disks:
                if disk.labels.get(LABEL_POOL):
                    pools.setdefault(disk.labels[LABEL_POOL], []).append(disk)
            here = {
                key: target for key, target in targets.items() if (key.project, key.zone) == (project, zone)
            }
            wanted = {gce_label(key.runtime_id) for key in here}
            for rid_label, members in sorted(pools.items()):
                if rid_label not in wanted:
                    report.deleted += await self._delete_unused(project, zone, members)
            for key, target in sorted(here.items()):
                have = len(pools.get(gce_label(key.runtime_id), []))
                created = await self._top_up(key, target, have, names)
                report.created += created
                sizes[(zone, key.runtime_id)] = have + len(created)
        self.metrics.warm_pool(sizes)
        return report

    async def _delete_unused(self, project: str, zone: str, members: Iterable[Disk]) -> list[str]:
        deleted = []
        for disk in members:
            if not disk.users:
                await self.cloud.ensure_deleted(project, zone, disk.name, idempotency_key=disk.name)
                deleted.append(disk.name)
        return deleted

    async def _top_up(self, key: PoolKey, target: PoolTarget, have: int, names: set[str]) -> list[str]:
        """Create pool disks at the next free indexes until the pool holds ``target.size``."""
        created: list[str] = []
        index = 0
        while have + len(created) < target.size and index < naming.POOL_INDEX_LIMIT:
            name = naming.pool_disk_name(key.zone, key.runtime_id, index, cluster=self.cluster)
            index += 1
            if name in names:
                continue  # a claimed disk keeps its name: skip to the next free index
            await self.cloud.ensure_disk(
                DiskRequest(
                    project=key.project,
                    zone=key.zone,
                    name=name,
                    source_image=target.image,
                    disk_type=str(target.disk_type),
                    size_gb=target.disk_size_gb,
                    labels={
                        **cluster_disk_labels(self.cluster),
                        LABEL_RUNTIME: gce_label(key.runtime_id),
                        LABEL_POOL: gce_label(key.runtime_id),
                    },
                ),
                idempotency_key=f"pool/{name}",
            )
            names.add(name)
            created.append(name)
        return created
