"""The orphan sweeper: delete cloud disks labelled as this cluster's that nothing claims any more.

Such disks are leaks from crashes between a claim and a create, or shared disks whose last node left (a
shared disk is deleted only once unused). No node or RuntimeDisk will ever point at them again, so the sweep
cannot learn where they are from what it sees: it searches every zone of each project (one aggregated list
per project), and the projects are the configured one (``--project``, or the credentials' project) as well
as those of the nodes and RuntimeDisks seen since start-up, so an operator restarted after the last node
left still finds them. Warm-pool disks are unclaimed by design and left to ``sdworker.warm_pool``, unless no
SDWorker wants a pool at all: then they are orphans too, wherever they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sdworker.cloud.provider import LABEL_CLUSTER, LABEL_MANAGED, LABEL_POOL, CloudProvider
from sdworker.metrics import Metrics
from sdworker.provisioning import gce_label

log = logging.getLogger("sdworker.orphan_sweep")


def cluster_disk_labels(cluster: str) -> dict[str, str]:
    """The labels every cloud disk of this cluster carries: what the sweeper and the warm pool list by."""
    return {LABEL_MANAGED: "true", LABEL_CLUSTER: gce_label(cluster)}


class OrphanSweeper:
    """Deletes this cluster's unclaimed disks in ``projects`` (always) and in the projects it is shown."""

    def __init__(
        self,
        cloud: CloudProvider,
        *,
        cluster: str,
        projects: Iterable[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.cloud = cloud
        self.cluster = cluster
        self.projects = frozenset(projects)
        self.metrics = metrics if metrics is not None else Metrics()
        self.orphans_deleted = 0

    async def sweep(
        self, claimed: Iterable[str], seen_projects: Iterable[str] = (), *, pools_wanted: bool = True
    ) -> list[str]:
        """Delete our unattached disks that no RuntimeDisk names (``claimed``: disk names), and pool disks
        too when no warm pool is wanted at all (``pools_wanted``; else they are the warm pool's to drain).

        Searches every zone of the configured projects and of ``seen_projects``.
        """
        keep = set(claimed)
        deleted = []
        for project in sorted(self.projects | set(seen_projects)):
            found = await self.cloud.list_disks_everywhere(project, cluster_disk_labels(self.cluster))
            for disk in sorted(found, key=lambda d: (d.zone, d.name)):
                if disk.name in keep or (pools_wanted and disk.labels.get(LABEL_POOL)) or disk.users:
                    continue
                log.info("deleting orphaned disk %s in %s", disk.name, disk.zone)
                await self.cloud.ensure_deleted(
                    project, disk.zone, disk.name, idempotency_key=f"orphan/{disk.name}"
                )
                deleted.append(disk.name)
        self.orphans_deleted += len(deleted)
        self.metrics.orphans(len(deleted))
        return deleted
