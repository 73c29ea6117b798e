"""``publish`` against the compute API simulator: a real ``images.insert`` over google-cloud-compute.

The archive goes to a local "bucket" directory (``LocalDirUploader``, a ``file://`` source the simulator
reads); the simulator unpacks ``disk.raw`` from it as GCE would. Checks the image's family, that its labels
and description read back (``sdworker.image_meta``) as the build's full digest, that publishing again is a
no-op, and that a name is never reused for other content or taken over from an image sdworker did not make.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import compute_v1

from sdworker import image_meta
from sdworker_images import build, publish
from sdworker_images.__main__ import main
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress
from sdworker_tools.computesim import ComputeSim, SimConfig, client_kwargs
from sdworker_tools.computesim.testing import make_ext4_image

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "examples" / "runtime-tree"
PROJECT = "sdworker-test"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    out = tmp_path_factory.mktemp("build") / "out"
    return build.build(build.BuildOptions(out=out, from_dir=TREE, offline=True), Progress(quiet=True))


@pytest.fixture
def sim() -> Iterator[ComputeSim]:
    with ComputeSim(SimConfig(latency="fast")) as running:
        yield running


def test_publish_creates_the_image_with_digest_labels_and_is_idempotent(
    tmp_path: Path, built: build.BuildResult, sim: ComputeSim
) -> None:
    uploader = publish.LocalDirUploader(tmp_path / "bucket")
    service = publish.ComputeImageService(sim.endpoint)
    result = publish.publish(
        built.out, project=PROJECT, uploader=uploader, images=service, family="sd-runtime"
    )
    assert result.created
    assert result.image == f"projects/{PROJECT}/global/images/sd-runtime-{built.digest[7:19]}"

    image = compute_v1.ImagesClient(**client_kwargs(sim.endpoint)).get(project=PROJECT, image=result.name)
    assert image.status == "READY"
    assert image.family == "sd-runtime"
    record = build.read_build_record(built.out)
    assert (dict(image.labels), image.description) == (
        image_meta.ImageMeta.from_build_record(record).labels(),
        image_meta.ImageMeta.from_build_record(record).description(),
    )
    assert image_meta.read_digest(image.description, dict(image.labels)) == built.digest == record["digest"]
    assert len(built.digest) == len("sha256:") + 64
    assert image.raw_disk.source == result.source_url
    assert image.disk_size_gb == 1
    assert image.archive_size_bytes == built.archive_bytes

    again = publish.publish(
        built.out, project=PROJECT, uploader=uploader, images=service, family="sd-runtime"
    )
    assert (again.created, again.name) == (False, result.name)


def test_a_name_is_not_reused_for_other_content(
    tmp_path: Path, built: build.BuildResult, sim: ComputeSim
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree, symlinks=True)
    (tree / "stable-diffusion-webui" / "extra.txt").write_text("different content\n")
    other = build.build(
        build.BuildOptions(out=tmp_path / "other", from_dir=tree, offline=True), Progress(quiet=True)
    )
    uploader = publish.LocalDirUploader(tmp_path / "bucket")
    service = publish.ComputeImageService(sim.endpoint)
    publish.publish(built.out, project=PROJECT, uploader=uploader, images=service, name="sd-runtime-fixed")
    with pytest.raises(BuildError, match=r"image sd-runtime-fixed already exists .* choose another --name"):
        publish.publish(
            other.out, project=PROJECT, uploader=uploader, images=service, name="sd-runtime-fixed"
        )


def test_a_name_held_by_an_image_sdworker_did_not_publish_is_not_taken(
    tmp_path: Path, built: build.BuildResult, sim: ComputeSim
) -> None:
    sim.register_image("taken", make_ext4_image(tmp_path / "other.ext4", {"a": "b"}), project=PROJECT)
    uploader = publish.LocalDirUploader(tmp_path / "bucket")
    service = publish.ComputeImageService(sim.endpoint)
    with pytest.raises(BuildError, match=r"image taken already exists .* not an sdworker image .*--name"):
        publish.publish(built.out, project=PROJECT, uploader=uploader, images=service, name="taken")


def test_the_cli_publishes_to_an_api_endpoint(
    tmp_path: Path, built: build.BuildResult, sim: ComputeSim, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["publish", "--build-dir", str(built.out), "--project", PROJECT, "--upload-dir", str(tmp_path)]
    assert main([*argv, "--api-endpoint", sim.endpoint, "--family", "sd-runtime"]) == 0
    captured = capsys.readouterr()
    image = captured.out.strip()
    assert image.startswith(f"projects/{PROJECT}/global/images/sd-runtime-")
    assert "created" in captured.err
    latest = compute_v1.ImagesClient(**client_kwargs(sim.endpoint)).get_from_family(
        project=PROJECT, family="sd-runtime"
    )
    assert latest.name == image.rsplit("/", 1)[-1]
