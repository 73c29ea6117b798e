"""The simulator's admin side (no quota, latency or faults): set-up, knobs, faults, holds, inventory, logs.

What a test or the ``/_sim/...`` API does to the simulated project from outside the compute API: images READY
at once, instances RUNNING at once, run-time knobs, scripted faults, an image held not ready (in some zones
or everywhere) until released, the inventory and the request/operation logs assertions read, and ``close``,
which releases every loop device, link and file.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import blockdev, errors
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.disks import DiskHandlers
from sdworker_tools.computesim.instances import InstanceHandlers, prune_dev_root
from sdworker_tools.computesim.latency import profile
from sdworker_tools.computesim.state import gib_ceil, valid_name

log = logging.getLogger(__name__)


class AdminHandlers(DiskHandlers, InstanceHandlers):
    def register_image(
        self,
        name: str,
        file: Path | None,
        *,
        project: str = "sim-project",
        family: str | None = None,
        labels: Mapping[str, str] | None = None,
        disk_size_gb: int | None = None,
        description: str = "",
        deprecated: str | None = None,
    ) -> dict[str, Any]:
        """An image that is READY at once, from a local raw filesystem file (or a GCE ``.tar.gz``)."""
        valid_name(name)
        image_labels = labelmod.validate(labels)
        with self._lock:
            image = self._new_image(
                project, name, family=family, description=description, labels=image_labels
            )
            image.deprecated = {"state": deprecated} if deprecated else None
        try:
            size = 0
            if file is not None:
                if not file.is_file():
                    raise errors.invalid_field("file", file, "The file does not exist.")
                size = file.stat().st_size
                if self._config.block_devices:
                    image.file = self.state_dir / "images" / project / f"{name}-{image.id}.raw"
                    size = blockdev.materialize_image(file, image.file)
            elif disk_size_gb is None or self._config.block_devices:
                raise errors.invalid("an image needs a file (or disk_size_gb when block devices are off)")
        except Exception:
            with self._lock:
                self._images.pop(image.key, None)
            raise
        with self._lock:
            image.archive_size_bytes = file.stat().st_size if file is not None else 0
            image.disk_size_gb = max(disk_size_gb or 0, gib_ceil(size))
            image.status = "READY"
            return image.to_json(self.links)

    def hold_image(
        self, name: str, *, project: str = "sim-project", zones: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Keep an image not ready until ``release_image``: in ``zones`` (the image stays READY elsewhere and
        in ``images.get``: a zone the image has not reached yet), or, with no zones, everywhere (``status``
        PENDING, as just after ``images.insert``). Meanwhile ``disks.insert`` from it there answers 400
        ``resourceNotReady``."""
        held = frozenset(zones)
        with self._lock:
            unknown = held - set(self._config.zones)
            if unknown:
                raise errors.invalid_field("zones", sorted(unknown), "Unknown zone.")
            image = self._image(project, name)
            image.hold = held
            return image.to_json(self.links)

    def release_image(self, name: str, *, project: str = "sim-project") -> dict[str, Any]:
        """End a hold: the image is ready wherever it was held."""
        with self._lock:
            image = self._image(project, name)
            image.hold = None
            return image.to_json(self.links)

    def create_instance(
        self,
        name: str,
        *,
        zone: str,
        project: str = "sim-project",
        machine_type: str = "n1-standard-4",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """An instance that is RUNNING at once (one per kwok node in tests)."""
        valid_name(name)
        inst_labels = labelmod.validate(labels)
        with self._lock:
            if zone not in self._config.zones:
                raise errors.invalid_field("zone", zone, "Unknown zone.")
            inst = self._new_instance(project, zone, name, machine_type, inst_labels)
            inst.status = "RUNNING"
            return self._instance_json(inst)

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            config = self._config.updated(changes)
            self._profile = profile(config.latency).with_overrides(config.latency_overrides)
            if "seed" in changes:
                self._rng = random.Random(config.seed)
            if {"write_quota_per_s", "write_quota_burst"} & set(changes):
                self._write_quota.configure(config.write_quota_per_s, config.write_quota_burst)
            if "read_quota_per_s" in changes:
                self._read_quota.configure(config.read_quota_per_s)
            self._config = config
            return config.runtime_view()

    @property
    def config(self) -> SimConfig:
        with self._lock:
            return self._config

    def add_faults(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._faults.extend(rules)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._faults]

    def inventory(self) -> dict[str, Any]:
        with self._lock:
            disks = []
            for disk in sorted(self._disks.values(), key=lambda d: d.key):
                entry = disk.to_json(self.links)
                entry["_sim"] = {"file": str(disk.file) if disk.file else None}
                disks.append(entry)
            instances = []
            for inst in sorted(self._instances.values(), key=lambda i: i.key):
                entry = self._instance_json(inst)
                entry["_sim"] = {
                    "devRoot": str(inst.dev_root),
                    "attachments": [
                        {
                            "deviceName": a.device_name,
                            "disk": self.links.disk(*a.disk),
                            "mode": a.mode,
                            "pending": a.pending,
                            "loop": a.loop,
                            "byId": str(blockdev.by_id_dir(inst.dev_root) / f"google-{a.device_name}"),
                        }
                        for a in inst.disks
                    ],
                }
                instances.append(entry)
            images = []
            for image in sorted(self._images.values(), key=lambda i: i.seq):
                entry = image.to_json(self.links)
                entry["_sim"] = {
                    "file": str(image.file) if image.file else None,
                    "heldIn": None if image.hold is None else sorted(image.hold) or ["*"],
                }
                images.append(entry)
            return {
                "images": images,
                "disks": disks,
                "instances": instances,
                "loopDevices": sorted(
                    a.loop for i in self._instances.values() for a in i.disks if a.loop is not None
                ),
                "warmImageZones": sorted(f"{p}/{n}@{z}" for (p, n), z in self._warm),
                "pendingOperations": dict(self._pending),
            }

    def operation_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            out = []
            for index, op in enumerate(self._op_log[since:], start=since):
                entry = op.to_json(self.links, now)
                entry["_sim"] = {
                    "index": index,
                    "method": op.method,
                    "requestId": op.request_id,
                    "latencyS": round(op.latency_s, 6),
                    "startedAtS": round(op.started_mono - self._t0, 6) if op.started_mono else None,
                    # What the simulator itself added to this operation: the insert call's own latency,
                    # the PENDING pause and the RUNNING time (a benchmark's cloud floor). Time spent queued
                    # behind other operations on the same resource is not in it; the wall-clock moments
                    # (epoch seconds) show it.
                    "injectedS": round(
                        self._profile.call_write_s + self._profile.pending_s + op.latency_s, 6
                    ),
                    "insertedAt": op.inserted,
                    "runningAt": op.started,
                    "endedAt": op.ended,
                }
                out.append(entry)
            return out

    def request_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_json() for e in self._requests if e.seq > since]

    def close(self) -> None:
        """Stop all operations and release every loop device, link and file. Idempotent."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self._scheduler.stop()
        with self._lock:
            instances = list(self._instances.values())
            disks = list(self._disks.values())
            images = list(self._images.values())
        for inst in instances:
            for att in list(inst.disks):
                try:
                    self._unplug(inst, att)
                except Exception:
                    log.exception("computesim: releasing %s on %s", att.device_name, inst.name)
            prune_dev_root(inst.dev_root, self.dev_base)
        # Anything a crash in the middle of an attach left behind is still findable by its file.
        blockdev.sweep(self.state_dir)
        for file in [d.file for d in disks] + [i.file for i in images]:
            if file is not None:
                blockdev.remove_file(file)
