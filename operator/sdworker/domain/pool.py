"""How many warm-pool disks each (zone, runtime) should hold.

A warm pool (PerNode mode, ``runtime.warmPool.size``) keeps ready, unattached disks per zone so a new
node only waits for an attach. The zones are those where matching nodes exist (the node pool's zones
as observed); the size is the largest asked for by the SDWorkers sharing the runtime. Pure: the
controller feeds it the placement it already computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sdworker.api import naming
from sdworker.api.types import DiskType, ResolvedImage, RuntimeDiskSpec, RuntimeMode, SDWorker


@dataclass(frozen=True, order=True)
class PoolKey:
    project: str
    zone: str
    runtime_id: str


@dataclass(frozen=True)
class PoolTarget:
    size: int
    image: str
    disk_type: DiskType
    disk_size_gb: int


def pool_targets(
    desired: Mapping[str, RuntimeDiskSpec],
    workers: Iterable[SDWorker],
    resolved: Mapping[str, ResolvedImage],
    pinned: Mapping[tuple[str, str], ResolvedImage] | None = None,
) -> dict[PoolKey, PoolTarget]:
    """Pool targets for the runtime each SDWorker rolls to (its resolved image, or the one it is pinned
    to: ``placement.place``'s ``pinned``); pools of any other runtime, say one a rollout leaves, drain."""
    pinned = pinned or {}
    sizes: dict[str, int] = {}
    for worker in workers:
        image = pinned.get(worker.key) or resolved.get(worker.spec.runtime.image)
        if image is None or worker.spec.runtime.mode is not RuntimeMode.PER_NODE:
            continue
        rid = naming.runtime_id(image.image)
        sizes[rid] = max(sizes.get(rid, 0), worker.spec.runtime.warm_pool.size)
    targets: dict[PoolKey, PoolTarget] = {}
    for spec in sorted(desired.values(), key=lambda s: (s.project, s.zone, s.runtime_id)):
        size = sizes.get(spec.runtime_id, 0)
        if spec.mode is not RuntimeMode.PER_NODE or size == 0:
            continue
        key = PoolKey(spec.project, spec.zone, spec.runtime_id)
        if key not in targets:
            targets[key] = PoolTarget(size, spec.image, spec.disk_type, spec.disk_size_gb)
    return targets
