"""``publish``: upload a build's ``image.tar.gz`` and create the GCE image from it with ``images.insert``.

The image carries what the operator and the agent need to trust it, in the format ``sdworker.image_meta``
owns (the operator's resolver reads it back with the same module): the full ``sha256:`` digest in the
description, its first 63 hex digits and the builder version in labels. Publishing is idempotent: the object
name is content-addressed, the ``requestId`` is derived from (project, image name, digest), and an existing
image with the same name and digest is success, while one with another digest (or without sdworker metadata)
is an error (names are not reused for other content).

Storage is behind the small ``Uploader`` protocol: ``LocalDirUploader`` (tests, the local demo, the compute
API simulator) and ``GcsUploader``, which needs ``google-cloud-storage`` (not a dependency of sdworker;
``pip install google-cloud-storage`` where you publish). ``images.insert`` goes through
``google.cloud.compute_v1.ImagesClient``; ``--api-endpoint`` points it at the compute API simulator.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from sdworker import image_meta
from sdworker_content.index import parse_digest
from sdworker_images import build, pack
from sdworker_images.errors import BuildError

NAME_MAX: Final = 63
DEFAULT_NAME_PREFIX: Final = "sd-runtime"
GCS_URL_PREFIX: Final = "https://storage.googleapis.com/"
_REQUEST_ID_NAMESPACE: Final = uuid.UUID("5b0f7f0e-8a55-4d1e-9a43-2f1f6c0d9e71")


class Uploader(Protocol):
    """Stores a file where ``images.insert`` can read it and returns that URL (``rawDisk.source``)."""

    def upload(self, path: Path, object_name: str) -> str: ...


@dataclass(frozen=True)
class LocalDirUploader:
    """Copies into a local directory, returns a ``file://`` URL: for tests and the compute API simulator."""

    directory: Path

    def upload(self, path: Path, object_name: str) -> str:
        target = self.directory / object_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.exists() and pack.sha256_of(target) == pack.sha256_of(path)):
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(path, partial)
            partial.replace(target)
        return target.resolve().as_uri()


@dataclass(frozen=True)
class GcsUploader:
    """Uploads to ``gs://bucket/prefix/``; needs google-cloud-storage and Application Default Credentials."""

    bucket: str
    prefix: str = ""

    @classmethod
    def from_url(cls, url: str) -> GcsUploader:
        if not url.startswith("gs://") or not url[5:].split("/", 1)[0]:
            raise BuildError(f"{url!r} is not a gs://BUCKET[/PREFIX] URL")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix.strip("/"))

    def upload(self, path: Path, object_name: str) -> str:
        try:
            from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise BuildError(
                "uploading to gs:// needs google-cloud-storage, which sdworker does not install: "
                "pip install google-cloud-storage (or upload yourself and pass --source-url)"
            ) from exc
        name = f"{self.prefix}/{object_name}" if self.prefix else object_name
        blob = storage.Client().bucket(self.bucket).blob(name)
        if not blob.exists():
            blob.upload_from_filename(str(path), content_type="application/gzip")
        return f"{GCS_URL_PREFIX}{self.bucket}/{name}"


def object_name(digest: str) -> str:
    """Content-addressed: the same build uploads to the same object, so re-running publish is free."""
    return f"sdworker/{parse_digest(digest)}/{build.ARCHIVE_NAME}"


def image_name(prefix: str, digest: str) -> str:
    """``<prefix>-<first 12 hex of the digest>``: a new name for new content, within GCE's 63 characters."""
    name = f"{prefix}-{parse_digest(digest)[:12]}"
    if len(name) > NAME_MAX:
        raise BuildError(f"image name {name!r} is longer than {NAME_MAX} characters: shorten the prefix")
    return name


def request_id(project: str, name: str, digest: str) -> str:
    """The same (project, name, digest) gives the same requestId, so GCE de-duplicates a retried insert."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"{project}/{name}/{digest}"))


@dataclass(frozen=True)
class ImageRequest:
    """An ``images.insert`` call, plain data until ``to_compute`` turns it into the client's request type."""

    project: str
    name: str
    family: str | None
    source_url: str
    digest: str
    description: str
    labels: Mapping[str, str]
    request_id: str
    sha1: str | None = None
    storage_locations: tuple[str, ...] = field(default_factory=tuple)

    def image_body(self) -> dict[str, Any]:
        """The Image resource as the REST API takes it (camelCase JSON)."""
        body: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "labels": dict(self.labels),
            "rawDisk": {"source": self.source_url, "containerType": "TAR"},
        }
        if self.family:
            body["family"] = self.family
        if self.sha1:
            body["rawDisk"]["sha1Checksum"] = self.sha1
        if self.storage_locations:
            body["storageLocations"] = list(self.storage_locations)
        return body

    def to_compute(self) -> Any:
        from google.cloud import compute_v1

        raw_disk = compute_v1.RawDisk(source=self.source_url, container_type="TAR")
        if self.sha1:
            raw_disk.sha1_checksum = self.sha1
        image = compute_v1.Image(
            name=self.name,
            description=self.description,
            labels=dict(self.labels),
            raw_disk=raw_disk,
            storage_locations=list(self.storage_locations),
        )
        if self.family:
            image.family = self.family
        return compute_v1.InsertImageRequest(
            project=self.project, image_resource=image, request_id=self.request_id
        )


def image_request(
    record: Mapping[str, Any],
    *,
    project: str,
    source_url: str,
    name: str | None = None,
    family: str | None = None,
    sha1: str | None = None,
    storage_locations: tuple[str, ...] = (),
) -> ImageRequest:
    """The insert request for a build record (``build.json``): name, family, labels and description from the
    build; labels and description are ``sdworker.image_meta``'s."""
    try:
        meta = image_meta.ImageMeta.from_build_record(record)
        description = meta.description()
    except image_meta.ImageMetaError as exc:
        raise BuildError(f"{build.BUILD_RECORD}: {exc}") from exc
    digest = meta.digest
    final_name = name or image_name(str(record.get("name") or DEFAULT_NAME_PREFIX), digest)
    final_family = family or record.get("family") or None
    return ImageRequest(
        project=project,
        name=final_name,
        family=str(final_family) if final_family else None,
        source_url=source_url,
        digest=digest,
        description=description,
        labels=meta.labels(),
        request_id=request_id(project, final_name, digest),
        sha1=sha1,
        storage_locations=storage_locations,
    )


@dataclass(frozen=True)
class ExistingImage:
    """What ``publish`` reads of an image already under the name it would create."""

    description: str
    labels: Mapping[str, str]


class ImageService(Protocol):
    """The two image calls ``publish`` makes; ``ComputeImageService`` is the real one."""

    def get(self, project: str, name: str) -> ExistingImage | None:
        """Image ``name``'s description and labels, or None if there is no such image."""
        ...

    def insert(self, request: ImageRequest, timeout: float) -> None:
        """Create the image and wait until the operation is done; BuildError if it fails."""
        ...


class ComputeImageService:
    """``images.get``/``images.insert`` through google-cloud-compute, waiting on the global operation.

    With ``api_endpoint`` (the simulator) the clients are anonymous and every call, operation polling
    included, goes to that endpoint: ``ExtendedOperation.result()`` would poll the real API instead.
    """

    def __init__(self, api_endpoint: str | None = None) -> None:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import compute_v1

        kwargs: dict[str, Any] = {"transport": "rest"}
        if api_endpoint:
            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call,unused-ignore]
            kwargs["client_options"] = ClientOptions(api_endpoint=api_endpoint)
        self._images = compute_v1.ImagesClient(**kwargs)
        self._operations = compute_v1.GlobalOperationsClient(**kwargs)
        self._done = compute_v1.Operation.Status.DONE

    def get(self, project: str, name: str) -> ExistingImage | None:
        from google.api_core import exceptions

        try:
            image = self._images.get(project=project, image=name)
        except exceptions.NotFound:
            return None
        return ExistingImage(image.description or "", dict(image.labels))

    def insert(self, request: ImageRequest, timeout: float) -> None:
        operation = self._images.insert_unary(request=request.to_compute())
        deadline = time.monotonic() + timeout
        while operation.status != self._done:
            if time.monotonic() > deadline:
                raise BuildError(f"images.insert of {request.name}: not done after {timeout:.0f}s")
            # wait returns when the operation is done or after its own deadline (about two minutes).
            operation = self._operations.wait(project=request.project, operation=operation.name)
        errors = [f"{e.code}: {e.message}" for e in operation.error.errors]
        if errors:
            raise BuildError(f"images.insert of {request.name} failed: {'; '.join(errors)}")


@dataclass(frozen=True)
class PublishResult:
    name: str
    project: str
    digest: str
    source_url: str
    created: bool

    @property
    def image(self) -> str:
        """What SDWorker ``spec.runtime.image`` takes."""
        return f"projects/{self.project}/global/images/{self.name}"


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def publish(
    build_dir: Path,
    *,
    project: str,
    uploader: Uploader,
    images: ImageService,
    name: str | None = None,
    family: str | None = None,
    storage_locations: tuple[str, ...] = (),
    timeout: float = 3600.0,
) -> PublishResult:
    """Upload ``build_dir/image.tar.gz`` and create the image; an identical existing image is success."""
    record = build.read_build_record(build_dir)
    archive_info = record.get("archive")
    if not archive_info:
        raise BuildError(f"{build_dir}: the build has no {build.ARCHIVE_NAME} (built with --no-pack?)")
    archive = build_dir / str(archive_info["file"])
    if pack.sha256_of(archive) != archive_info.get("sha256"):
        raise BuildError(f"{archive}: sha256 differs from {build.BUILD_RECORD}: rebuild, do not publish this")
    digest = str(record["digest"])
    source_url = uploader.upload(archive, object_name(digest))
    request = image_request(
        record,
        project=project,
        source_url=source_url,
        name=name,
        family=family,
        sha1=sha1_of(archive),
        storage_locations=storage_locations,
    )
    existing = images.get(project, request.name)
    if existing is not None:
        try:
            existing_digest = image_meta.read_digest(existing.description, existing.labels)
        except image_meta.ImageMetaError as exc:
            raise BuildError(
                f"image {request.name} already exists in {project} and is not an sdworker image ({exc}): "
                "choose another --name"
            ) from exc
        if existing_digest == digest:
            return PublishResult(request.name, project, digest, source_url, created=False)
        raise BuildError(
            f"image {request.name} already exists in {project} with digest {existing_digest}, not {digest}: "
            "choose another --name"
        )
    images.insert(request, timeout)
    return PublishResult(request.name, project, digest, source_url, created=True)
