"""Cloud housekeeping beside the per-disk work: the warm pool and the orphan sweeper.

Owns the warm pool's claim (a label update guarded by the disk's label fingerprint, so two nodes never
claim the same disk), its background refill and the deletion of pool disks of runtimes nobody needs,
and the periodic sweep that deletes disks labelled as this cluster's that no RuntimeDisk claims
(leaks from crashes between a claim and a create, or shared disks whose last node left).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sdworker.api import naming
from sdworker.api.types import RuntimeDiskSpec
from sdworker.cloud.errors import CloudError
from sdworker.cloud.provider import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POOL,
    LABEL_RUNTIME,
    CloudProvider,
    Disk,
    DiskRequest,
)
from sdworker.domain.pool import PoolKey, PoolTarget
from sdworker.metrics import Metrics
from sdworker.provisioning import gce_label

log = logging.getLogger("sdworker.maintenance")


@dataclass
class SweepReport:
    deleted: list[str]
    pool_created: list[str]
    pool_deleted: list[str]


class Maintenance:
    def __init__(self, cloud: CloudProvider, *, cluster: str, metrics: Metrics | None = None) -> None:
        self.cloud = cloud
        self.cluster = cluster
        self.metrics = metrics if metrics is not None else Metrics()
        self.orphans_deleted = 0

    def _ours(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_CLUSTER: gce_label(self.cluster)}

    # --- warm pool -----------------------------------------------------------------------------

    async def claim(self, spec: RuntimeDiskSpec) -> str | None:
        """Take a ready pool disk for ``spec``'s node; ``None`` when the pool is empty."""
        pool = await self.cloud.list_disks(
            spec.project, spec.zone, {**self._ours(), LABEL_POOL: gce_label(spec.runtime_id)}
        )
        for disk in sorted(pool, key=lambda d: d.name):
            if disk.status != "READY" or disk.users or disk.size_gb < spec.disk_size_gb:
                continue
            labels = {k: v for k, v in disk.labels.items() if k != LABEL_POOL}
            labels[LABEL_NODE] = gce_label(spec.node_name)
            try:
                await self.cloud.set_labels(
                    spec.project, spec.zone, disk.name, labels, disk.label_fingerprint
                )
            except CloudError as err:
                if err.reason == "LabelFingerprintMismatch":
                    continue  # someone claimed it first
                raise
            log.info("node %s claimed warm-pool disk %s", spec.node_name, disk.name)
            return disk.name
        return None

    async def refill(
        self, targets: Mapping[PoolKey, PoolTarget], zones: Iterable[tuple[str, str]]
    ) -> SweepReport:
        """Bring every pool to its target size and delete pool disks of runtimes no longer wanted."""
        report = SweepReport([], [], [])
        sizes: dict[tuple[str, str], int] = {}
        for project, zone in sorted(set(zones) | {(k.project, k.zone) for k in targets}):
            disks = await self.cloud.list_disks(project, zone, self._ours())
            names = {d.name for d in disks}
            pools: dict[str, list[Disk]] = {}
            for disk in disks:
                if disk.labels.get(LABEL_POOL):
                    pools.setdefault(disk.labels[LABEL_POOL], []).append(disk)
            for rid_label, members in sorted(pools.items()):
                wanted = any(
                    gce_label(k.runtime_id) == rid_label and (k.project, k.zone) == (project, zone)
                    for k in targets
                )
                if not wanted:
                    for disk in members:
                        if not disk.users:
                            await self.cloud.ensure_deleted(
                                project, zone, disk.name, idempotency_key=disk.name
                            )
                            report.pool_deleted.append(disk.name)
            for key, target in sorted(targets.items()):
                if (key.project, key.zone) != (project, zone):
                    continue
                have = len(pools.get(gce_label(key.runtime_id), []))
                index = 0
                while have < target.size and index < naming.POOL_INDEX_LIMIT:
                    name = naming.pool_disk_name(zone, key.runtime_id, index, cluster=self.cluster)
                    index += 1
                    if name in names:
                        continue  # a claimed disk keeps its name: skip to the next free index
                    await self.cloud.ensure_disk(
                        DiskRequest(
                            project=project,
                            zone=zone,
                            name=name,
                            source_image=target.image,
                            disk_type=str(target.disk_type),
                            size_gb=target.disk_size_gb,
                            labels={
                                **self._ours(),
                                LABEL_RUNTIME: gce_label(key.runtime_id),
                                LABEL_POOL: gce_label(key.runtime_id),
                            },
                        ),
                        idempotency_key=f"pool/{name}",
                    )
                    names.add(name)
                    have += 1
                    report.pool_created.append(name)
                sizes[(zone, key.runtime_id)] = have
        self.metrics.warm_pool(sizes)
        return report

    # --- orphans -------------------------------------------------------------------------------

    async def sweep(self, claimed: Iterable[str], zones: Iterable[tuple[str, str]]) -> list[str]:
        """Delete our unattached, non-pool disks that no RuntimeDisk names.

        Every zone of each project in ``zones`` is searched (one aggregated list per project), not only
        the zones given: a disk leaked in a zone whose nodes all left before this operator started is
        one no node or RuntimeDisk will ever point at again.
        """
        keep = set(claimed)
        deleted = []
        for project in sorted({project for project, _ in zones}):
            found = await self.cloud.list_disks_everywhere(project, self._ours())
            for disk in sorted(found, key=lambda d: (d.zone, d.name)):
                if disk.name in keep or disk.labels.get(LABEL_POOL) or disk.users:
                    continue
                log.info("deleting orphaned disk %s in %s", disk.name, disk.zone)
                await self.cloud.ensure_deleted(
                    project, disk.zone, disk.name, idempotency_key=f"orphan/{disk.name}"
                )
                deleted.append(disk.name)
        self.orphans_deleted += len(deleted)
        self.metrics.orphans(len(deleted))
        return deleted
