"""The disks resource: ``disks.get``/``list``/``aggregatedList``/``insert``/``delete``/``setLabels``.

A disk is CREATING from the moment its insert is accepted until the operation has cloned the image (or made
a blank file), then READY. An image that is not READY (still PENDING after ``images.insert``, or held by
``Engine.hold_image``) refuses ``disks.insert`` with 400 ``resourceNotReady`` "The resource
'projects/P/global/images/X' is not ready", as GCE answers it (the wording reported in
ZcashFoundation/zebra#5044). The first disk of an image in a zone also pays the zone-cold copy latency of
the profile (``first_in_zone_extra``). A disk in use, or still CREATING, cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from sdworker_tools.computesim import access, blockdev, errors
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.errors import OperationFailure
from sdworker_tools.computesim.images import ImageHandlers
from sdworker_tools.computesim.links import parse_image, parse_zonal
from sdworker_tools.computesim.models import Disk, Image, queue_key
from sdworker_tools.computesim.state import GIB, Call, valid_name

DISK_TYPES = (
    "pd-standard",
    "pd-balanced",
    "pd-ssd",
    "pd-extreme",
    "hyperdisk-balanced",
    "hyperdisk-ml",
    "hyperdisk-throughput",
    "hyperdisk-extreme",
)


class DiskHandlers(ImageHandlers):
    def _disks_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._disk_of(call).to_json(self.links)

    def _disks_list(self, call: Call) -> dict[str, Any]:
        """``disks.list`` and ``disks.aggregatedList``."""
        return self._zonal_list(call, Disk, self._disks, lambda d: d.to_json(self.links))

    def _disk_type(self, call: Call, zone: str) -> str:
        if not call.body.get("type"):
            return "pd-standard"
        value = call.body["type"]
        ref = parse_zonal(
            str(value), "diskTypes", project=call.project, zone=zone, field_name="resource.type"
        )
        if ref.zone != zone:
            raise errors.invalid_field("resource.type", value, "Disk type must be in the disk's zone.")
        if ref.name not in DISK_TYPES:
            raise errors.not_found(f"projects/{ref.project}/zones/{ref.zone}/diskTypes/{ref.name}")
        return ref.name

    def _source_image(self, call: Call, zone: str) -> Image | None:
        """The image a disk is created from, READY in ``zone``; None for a blank disk."""
        source = call.body.get("sourceImage") or call.query.get("sourceImage")
        if not source:
            return None
        ref = parse_image(str(source), project=call.project, field_name="resource.sourceImage")
        image = (
            self._newest_in_family(ref.project, ref.name)
            if ref.family
            else self._image(ref.project, ref.name)
        )
        if not image.ready_in(zone):
            raise errors.not_ready(f"projects/{image.project}/global/images/{image.name}")
        return image

    def _disk_size(self, call: Call, image: Image | None) -> int:
        size_field = call.body.get("sizeGb")
        if size_field is None:
            return image.disk_size_gb if image is not None else 10
        try:
            size_gb = int(size_field)
        except (TypeError, ValueError):
            raise errors.invalid_field("resource.sizeGb", size_field, "Must be an integer.") from None
        if size_gb < 1:
            raise errors.invalid_field("resource.sizeGb", size_gb, "Must be at least 1.")
        if image is not None and size_gb < image.disk_size_gb:
            raise errors.invalid(
                f"Requested disk size cannot be smaller than the image size ({image.disk_size_gb} GB)"
            )
        return size_gb

    def _disks_insert(self, call: Call) -> dict[str, Any]:
        project = call.project
        name = valid_name(call.body.get("name"))
        disk_labels = labelmod.validate(call.body.get("labels"))
        with self._lock:
            zone = self._known_zone(call)
            type_name = self._disk_type(call, zone)
            access_mode = access.access_mode_for_insert(type_name, call.body.get("accessMode"))
            image = self._source_image(call, zone)
            size_gb = self._disk_size(call, image)
            if (project, zone, name) in self._disks:
                raise errors.already_exists(f"projects/{project}/zones/{zone}/disks/{name}")
            self._admit((queue_key("disk", (project, zone, name)),))
            disk = Disk(
                **self._identity(project, zone, name),
                size_gb=size_gb,
                type_name=type_name,
                access_mode=access_mode,
                description=str(call.body.get("description", "")),
                labels=disk_labels,
                source_image=image.key if image else None,
                source_image_id=image.id if image else None,
            )
            self._disks[disk.key] = disk
            extra = 0.0
            if image is not None and (image.key, zone) not in self._warm:
                extra = self._profile.first_in_zone_extra(image.disk_size_gb)
            latency = self._profile.sample(call.method, self._rng, extra_s=extra)
            image_file = image.file if image is not None else None
            image_key = image.key if image is not None else None

            def effect() -> None:
                file = None
                if self._config.block_devices:
                    file = self.state_dir / "disks" / project / zone / f"{name}-{disk.id}.raw"
                    if image_file is not None:
                        blockdev.clone_disk(image_file, file, size_gb * GIB)
                    else:
                        blockdev.create_blank(file, size_gb * GIB)
                with self._lock:
                    disk.file = file
                    disk.status = "READY"
                    if image_key is not None:
                        self._warm.add((image_key, zone))

            return self._accept(
                call, disk, effect=effect, abort=lambda _: self._forget_disk(disk), latency_s=latency
            )

    def _forget_disk(self, disk: Disk) -> None:
        """The undo of an insert, and the effect of a delete: the disk and its file go."""
        with self._lock:
            if self._disks.get(disk.key) is disk:
                del self._disks[disk.key]
        if disk.file is not None:
            blockdev.remove_file(disk.file)

    def _disks_delete(self, call: Call) -> dict[str, Any]:
        with self._lock:
            disk = self._disk_of(call)
            path = f"projects/{disk.project}/zones/{disk.zone}/disks/{disk.name}"
            if disk.status == "CREATING":
                raise errors.not_ready(path)
            users = self._disk_users(disk.key)
            if users:
                raise errors.in_use(
                    path, f"projects/{disk.project}/zones/{disk.zone}/instances/{users[0][0].name}"
                )
            self._admit((disk.queue_key,))
            previous = disk.status
            disk.status = "DELETING"

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    disk.status = previous

            return self._accept(call, disk, effect=lambda: self._forget_disk(disk), abort=abort)

    def _disks_set_labels(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._set_labels(call, self._disk_of(call, "resource"))
