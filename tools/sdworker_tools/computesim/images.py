"""The images resource: ``get``, ``getFromFamily``, ``list``, ``insert``, ``delete``, ``deprecate``, labels.

An image is PENDING until its ``images.insert`` operation has materialised its file, then READY; GCE lets a
disk be created from an image only once it is READY (Compute Engine API reference, ``Image.status``: "An
image can be used to create other resources, such as instances, only after the image has been
successfully created and the status is set to READY"), and ``getFromFamily`` returns the newest READY,
non-deprecated image of a family. ``rawDisk.source`` is a Cloud Storage URL mapped to ``gcs_root``, or a
local file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import blockdev, errors, listing
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.core import Core
from sdworker_tools.computesim.errors import OperationFailure
from sdworker_tools.computesim.models import Image, queue_key
from sdworker_tools.computesim.state import GIB, Call, gib_ceil, valid_name


class ImageHandlers(Core):
    def _new_image(
        self, project: str, name: str, *, family: str | None, description: str, labels: dict[str, str]
    ) -> Image:
        """A new PENDING image, registered. Lock held."""
        if (project, name) in self._images:
            raise errors.already_exists(f"projects/{project}/global/images/{name}")
        image = Image(
            project=project,
            name=name,
            id=self._new_id(),
            created=time.time(),
            seq=next(self._seq),
            family=family,
            description=description,
            labels=labels,
        )
        self._images[image.key] = image
        return image

    def _newest_in_family(self, project: str, family: str) -> Image:
        candidates = [
            i
            for i in self._images.values()
            if i.project == project and i.family == family and i.ready_in(None) and not i.is_deprecated()
        ]
        if not candidates:
            raise errors.not_found(f"projects/{project}/global/images/family/{family}")
        return max(candidates, key=lambda i: i.seq)

    def _images_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._image(call.project, call.params["image"]).to_json(self.links)

    def _images_get_from_family(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._newest_in_family(call.project, call.params["family"]).to_json(self.links)

    def _images_list(self, call: Call) -> dict[str, Any]:
        with self._lock:
            items = [i.to_json(self.links) for i in self._images.values() if i.project == call.project]
        return listing.page(
            call.query, "compute#imageList", f"projects/{call.project}/global/images", items, self.links
        )

    def _resolve_raw_source(self, source: str) -> Path:
        if source.startswith("file://"):
            return Path(source.removeprefix("file://"))
        if source.startswith("/"):
            return Path(source)
        for prefix in ("gs://", "https://storage.googleapis.com/", "https://storage.cloud.google.com/"):
            if source.startswith(prefix):
                if self._config.gcs_root is None:
                    raise errors.invalid_field(
                        "rawDisk.source",
                        source,
                        "The simulator has no gcs_root to map Cloud Storage URLs to.",
                    )
                return self._config.gcs_root / source.removeprefix(prefix)
        raise errors.invalid_field(
            "rawDisk.source", source, "Expected a gs://, https://storage... or file URL."
        )

    def _images_insert(self, call: Call) -> dict[str, Any]:
        project = call.project
        body = call.body
        name = valid_name(body.get("name"))
        raw = body.get("rawDisk") or {}
        source = raw.get("source")
        if not source:
            raise errors.required("resource.rawDisk.source")
        path = self._resolve_raw_source(str(source))
        if not path.is_file():
            raise errors.invalid_field("rawDisk.source", source, "The file does not exist.")
        image_labels = labelmod.validate(body.get("labels"))
        family = body.get("family")
        if family is not None:
            valid_name(family, "resource.family")
        archive_size = path.stat().st_size
        with self._lock:
            if (project, name) in self._images:
                raise errors.already_exists(f"projects/{project}/global/images/{name}")
            self._admit((queue_key("image", (project, name)),))
            image = self._new_image(
                project,
                name,
                family=family,
                description=str(body.get("description", "")),
                labels=image_labels,
            )
            image.archive_size_bytes, image.raw_source = archive_size, str(source)
            latency = self._profile.sample(call.method, self._rng) + self._profile.image_per_gib_s * (
                archive_size / GIB
            )
            requested_gb = int(body.get("diskSizeGb", 0) or 0)

            def effect() -> None:
                file = None
                size = archive_size
                if self._config.block_devices:
                    file = self.state_dir / "images" / project / f"{name}-{image.id}.raw"
                    size = blockdev.materialize_image(path, file)
                with self._lock:
                    image.file = file
                    image.disk_size_gb = max(requested_gb, gib_ceil(size))
                    image.status = "READY"

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    self._images.pop(image.key, None)
                    if image.file is not None:
                        blockdev.remove_file(image.file)

            return self._accept(call, image, effect=effect, abort=abort, latency_s=latency)

    def _images_delete(self, call: Call) -> dict[str, Any]:
        with self._lock:
            image = self._image(call.project, call.params["image"])

            def effect() -> None:
                with self._lock:
                    self._images.pop(image.key, None)
                if image.file is not None:
                    blockdev.remove_file(image.file)

            return self._accept(call, image, effect=effect)

    def _images_deprecate(self, call: Call) -> dict[str, Any]:
        state = call.body.get("state", "ACTIVE")
        if state not in ("ACTIVE", "DEPRECATED", "OBSOLETE", "DELETED"):
            raise errors.invalid_field("deprecationStatus.state", state, "Unknown deprecation state.")
        with self._lock:
            image = self._image(call.project, call.params["image"])
            deprecated = {k: str(v) for k, v in call.body.items() if v is not None}

            def effect() -> None:
                with self._lock:
                    image.deprecated = None if state == "ACTIVE" else deprecated

            return self._accept(call, image, effect=effect)

    def _images_set_labels(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._set_labels(call, self._image(call.project, call.params["resource"]))
