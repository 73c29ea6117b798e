"""How ``publish`` builds its ``images.insert`` request, names and uploads; the call itself runs against
the compute API simulator in tests/integration/test_images_publish.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sdworker import image_meta
from sdworker_images import publish
from sdworker_images.errors import BuildError

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
RECORD: dict[str, Any] = {
    "format": "sdworker.dev/runtime-build/v1",
    "digest": DIGEST,
    "name": "a1111-sd15",
    "family": "sd-runtime",
    "builder": {"name": "sdworker-images", "version": "0.1.0"},
    "interpreter": {"path": "/usr/bin/python3.10", "version": "3.10.12"},
    "totalBytes": 4_300_000_000,
    "fileCount": 41_000,
}
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def test_the_request_carries_name_family_labels_and_source() -> None:
    request = publish.image_request(RECORD, project="proj", source_url="https://storage.googleapis.com/b/o")
    assert request.name == "a1111-sd15-0123456789ab"
    assert request.family == "sd-runtime"
    meta = image_meta.ImageMeta.from_build_record(RECORD)
    assert (request.labels, request.description) == (meta.labels(), meta.description())
    assert all(LABEL_VALUE.fullmatch(v) for v in request.labels.values())
    assert image_meta.read_digest(request.description, request.labels) == DIGEST
    assert "/usr/bin/python3.10" in request.description
    assert request.image_body() == {
        "name": "a1111-sd15-0123456789ab",
        "family": "sd-runtime",
        "description": request.description,
        "labels": request.labels,
        "rawDisk": {"source": "https://storage.googleapis.com/b/o", "containerType": "TAR"},
    }


def test_overrides_and_defaults() -> None:
    request = publish.image_request(
        {**RECORD, "name": None, "family": None},
        project="proj",
        source_url="file:///x",
        sha1="f" * 40,
        storage_locations=("us",),
    )
    assert request.name == "sd-runtime-0123456789ab"
    assert request.family is None
    body = request.image_body()
    assert "family" not in body
    assert body["rawDisk"]["sha1Checksum"] == "f" * 40
    assert body["storageLocations"] == ["us"]
    named = publish.image_request(RECORD, project="p", source_url="file:///x", name="custom", family="fam")
    assert (named.name, named.family) == ("custom", "fam")


def test_the_compute_request_object_matches_the_body() -> None:
    request = publish.image_request(RECORD, project="proj", source_url="file:///a.tar.gz", sha1="e" * 40)
    insert = request.to_compute()
    assert insert.project == "proj"
    assert insert.request_id == request.request_id
    image = insert.image_resource
    assert (image.name, image.family) == (request.name, "sd-runtime")
    assert dict(image.labels) == request.labels
    assert (image.raw_disk.source, image.raw_disk.container_type) == ("file:///a.tar.gz", "TAR")
    assert image.raw_disk.sha1_checksum == "e" * 40


def test_the_request_id_is_stable_and_distinct() -> None:
    first = publish.request_id("p", "n", DIGEST)
    assert first == publish.request_id("p", "n", DIGEST)
    assert len({first, publish.request_id("q", "n", DIGEST), publish.request_id("p", "m", DIGEST)}) == 3
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)


def test_names_are_checked() -> None:
    assert publish.object_name(DIGEST) == f"sdworker/{HEX}/image.tar.gz"
    with pytest.raises(BuildError, match="longer than 63"):
        publish.image_name("x" * 51, DIGEST)
    with pytest.raises(BuildError, match=r"build\.json: digest 'sha256:xyz' is not sha256:<64"):
        publish.image_request({**RECORD, "digest": "sha256:xyz"}, project="p", source_url="file:///x")
    with pytest.raises(BuildError, match=r"build\.json: digest 'sha256:[0-9a-f]{63}' has 63 hex digits"):
        publish.image_request({**RECORD, "digest": DIGEST[:-1]}, project="p", source_url="file:///x")


def test_local_uploads_are_content_addressed_and_idempotent(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar.gz"
    archive.write_bytes(b"archive bytes")
    uploader = publish.LocalDirUploader(tmp_path / "bucket")
    url = uploader.upload(archive, publish.object_name(DIGEST))
    stored = tmp_path / "bucket" / "sdworker" / HEX / "image.tar.gz"
    assert url == stored.as_uri()
    assert stored.read_bytes() == b"archive bytes"
    before = stored.stat().st_mtime_ns
    assert uploader.upload(archive, publish.object_name(DIGEST)) == url
    assert stored.stat().st_mtime_ns == before, "an identical object is not rewritten"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("gs://b", "b", ""), ("gs://b/", "b", ""), ("gs://b/p/q/", "b", "p/q")],
)
def test_gcs_urls(url: str, bucket: str, prefix: str) -> None:
    assert publish.GcsUploader.from_url(url) == publish.GcsUploader(bucket, prefix)


@pytest.mark.parametrize("url", ["s3://b", "gs://", "b/p"])
def test_bad_gcs_urls(url: str) -> None:
    with pytest.raises(BuildError, match="not a gs://BUCKET"):
        publish.GcsUploader.from_url(url)


def test_the_gcs_uploader_says_what_to_install(tmp_path: Path) -> None:
    try:
        import google.cloud.storage  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("google-cloud-storage is installed here")
    with pytest.raises(BuildError, match="pip install google-cloud-storage"):
        publish.GcsUploader("b").upload(tmp_path / "x", "o")


def test_publish_refuses_a_build_without_an_archive_or_with_a_changed_one(tmp_path: Path) -> None:
    (tmp_path / "build.json").write_text('{"format": "sdworker.dev/runtime-build/v1", "archive": null}')
    with pytest.raises(BuildError, match=r"has no image\.tar\.gz"):
        publish.publish(
            tmp_path, project="p", uploader=publish.LocalDirUploader(tmp_path), images=_NoService()
        )
    (tmp_path / "image.tar.gz").write_bytes(b"changed")
    (tmp_path / "build.json").write_text(
        json.dumps(
            {
                "format": "sdworker.dev/runtime-build/v1",
                "digest": DIGEST,
                "archive": {"file": "image.tar.gz", "sha256": "0" * 64},
            }
        )
    )
    with pytest.raises(BuildError, match=r"sha256 differs from build\.json"):
        publish.publish(
            tmp_path, project="p", uploader=publish.LocalDirUploader(tmp_path), images=_NoService()
        )


class _NoService:
    """Publishing must fail before it talks to the API; any call is a test failure."""

    def get(self, project: str, name: str) -> publish.ExistingImage | None:
        raise AssertionError("unexpected images.get")

    def insert(self, request: publish.ImageRequest, timeout: float) -> None:
        raise AssertionError("unexpected images.insert")
