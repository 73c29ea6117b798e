"""The image builder end to end with the real mkfs.ext4, debugfs, e2fsck and tar, on the example tree.

Proves the acceptance criteria of the builder: the same tree gives byte-identical ``disk.raw`` and
``image.tar.gz`` and the same digest; one changed byte changes the digest; the archive is what GCE imports;
the image mounts read-only through a loop device and every file verifies with the node agent's own
verifier (``sdworker_content.verify``); and bad input fails before any image is written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from sdworker import runtime_layout as layout
from sdworker_content.index import ContentIndex, Interpreter
from sdworker_content.verify import VerifyMode, verify
from sdworker_images import build, ext4, proc, spec
from sdworker_images.__main__ import main
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress
from sdworker_images.webui_extension import extension_dir

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "examples" / "runtime-tree"
MODEL_PATH = "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _build(
    out: Path, *, from_dir: Path | None = TREE, spec_path: Path | None = None, pack: bool = True
) -> build.BuildResult:
    options = build.BuildOptions(out=out, from_dir=from_dir, spec_path=spec_path, pack=pack, offline=True)
    return build.build(options, Progress(quiet=True))


def _copy_tree(dest: Path) -> Path:
    shutil.copytree(TREE, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[build.BuildResult, build.BuildResult]:
    """The example tree built twice, the second time from a copy elsewhere with other times and modes."""
    first = _build(tmp_path_factory.mktemp("first") / "out")
    copy = _copy_tree(tmp_path_factory.mktemp("elsewhere") / "deeper" / "tree")
    for path in copy.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_234_567_890, 1_234_567_890))
            path.chmod(0o700 if path.is_dir() else 0o600)
    second = _build(tmp_path_factory.mktemp("second") / "out", from_dir=copy)
    return first, second


def test_the_same_tree_gives_the_same_digest_and_identical_bytes(
    twice: tuple[build.BuildResult, build.BuildResult],
) -> None:
    first, second = twice
    assert first.digest == second.digest
    assert _sha256(first.raw) == _sha256(second.raw)
    assert first.archive is not None
    assert second.archive is not None
    assert _sha256(first.archive) == _sha256(second.archive) == first.archive_sha256
    assert (first.out / "manifest.json").read_bytes() == (second.out / "manifest.json").read_bytes()


def test_one_changed_byte_changes_the_digest(
    tmp_path: Path, twice: tuple[build.BuildResult, build.BuildResult]
) -> None:
    tree = _copy_tree(tmp_path / "tree")
    launch = tree / "stable-diffusion-webui" / "launch.py"
    data = bytearray(launch.read_bytes())
    data[-2] ^= 0x01
    launch.write_bytes(bytes(data))
    changed = _build(tmp_path / "out", from_dir=tree, pack=False)
    original = twice[0]
    assert changed.digest != original.digest
    before = {e.path: e for e in original.index.entries}
    after = {e.path: e for e in changed.index.entries}
    assert [p for p in before if before[p] != after[p]] == ["stable-diffusion-webui/launch.py"]
    assert not (tmp_path / "out" / "image.tar.gz").exists(), "--no-pack writes no archive"


def test_the_outputs_describe_the_image(twice: tuple[build.BuildResult, build.BuildResult]) -> None:
    result = twice[0]
    record = build.read_build_record(result.out)
    assert record["digest"] == result.digest
    assert record["disk"] == {"file": "disk.raw", "bytes": result.raw.stat().st_size, "sizeGb": 1}
    assert result.raw.stat().st_size % ext4.GIB == 0
    text = (result.out / "manifest.json").read_text()
    assert ContentIndex.from_json(text).digest == result.digest
    assert ContentIndex.from_json(text).interpreter == Interpreter("/usr/bin/python3.10", "3.10.12")
    header = proc.run(["dumpe2fs", "-h", str(result.raw)], env={"LC_ALL": "C"}).stdout
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    assert fields["Filesystem UUID"].strip() == ext4.derived_uuid(result.digest, "fs-uuid")
    assert fields["Filesystem volume name"].strip() == ext4.label_for(result.digest)
    assert fields["Directory Hash Seed"].strip() == ext4.derived_uuid(result.digest, "hash-seed")
    assert "has_journal" not in fields["Filesystem features"]
    assert fields["Reserved block count"].strip() == "0"


def test_the_archive_is_what_gce_imports(twice: tuple[build.BuildResult, build.BuildResult]) -> None:
    result = twice[0]
    assert result.archive is not None
    with tarfile.open(result.archive, "r:gz") as archive:
        (member,) = archive.getmembers()
    assert member.name == "disk.raw"
    assert member.size == result.raw.stat().st_size
    assert member.issparse(), "holes are stored sparse"
    assert (member.uid, member.gid, member.mode, member.mtime) == (0, 0, 0o644, build.DEFAULT_FIXED_TIME)
    with gzip.open(result.archive) as stream:
        header = stream.read(512)
    assert header[257:265] == b"ustar  \x00", "GNU (oldgnu) magic"
    assert header[156:157] == b"S", "GNU sparse member"
    with result.archive.open("rb") as raw_gzip:
        gz_header = raw_gzip.read(10)
    assert gz_header[4:8] == b"\x00\x00\x00\x00", "gzip -n: no timestamp"


def _loop_devices_usable() -> bool:
    return os.geteuid() == 0 and Path("/dev/loop-control").exists() and shutil.which("losetup") is not None


@pytest.fixture
def mounted(tmp_path: Path, twice: tuple[build.BuildResult, build.BuildResult]) -> Iterator[Path]:
    """The first build's disk.raw on a read-only loop device, mounted ``ro,noload`` as the agent does."""
    if not _loop_devices_usable():
        pytest.skip("needs root and loop devices")
    image = tmp_path / "disk.raw"
    shutil.copyfile(twice[0].raw, image)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    device = proc.run(["losetup", "--find", "--show", "--read-only", str(image)]).stdout.strip()
    try:
        proc.run(["mount", "-t", "ext4", "-o", "ro,noload", device, str(mountpoint)])
        try:
            yield mountpoint
        finally:
            proc.run(["umount", str(mountpoint)])
    finally:
        proc.run(["losetup", "--detach", device])
    listed = proc.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"]).stdout
    assert str(image) not in listed, "the loop device is gone"


def test_the_image_mounts_read_only_and_every_file_verifies(
    mounted: Path, twice: tuple[build.BuildResult, build.BuildResult]
) -> None:
    digest = twice[0].digest
    result = verify(mounted, digest, VerifyMode.FULL)
    assert result.ok, result.summary()
    assert result.files_checked == twice[0].index.file_count
    assert result.bytes_checked == twice[0].index.total_bytes
    assert verify(mounted, digest, VerifyMode.DIGEST).ok
    model = mounted / MODEL_PATH
    st = model.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert st.st_mtime == st.st_atime == st.st_ctime == build.DEFAULT_FIXED_TIME
    assert os.readlink(mounted / "venv" / "bin" / "python") == "/usr/bin/python3.10"
    with pytest.raises(OSError, match="Read-only file system"):
        (mounted / "new-file").write_text("x")


# --- bad input fails before any image is written ---


def _spec(directory: Path, models: str, python: str = "{version: '3.10', path: /usr/bin/python3.10}") -> Path:
    path = directory / "runtime.yaml"
    path.write_text(
        "apiVersion: sdworker.dev/v1alpha1\nkind: RuntimeImage\nmetadata: {name: test}\n"
        f"python: {python}\nmodels: {models}"
    )
    return path


def _example_model_spec(directory: Path) -> Path:
    """A spec declaring the example's real model (by its real sha256), which the example tree only fakes."""
    (model,) = spec.load(REPO / "examples" / "runtime.yaml").models
    entry = {"path": model.path, "url": model.url, "sha256": model.sha256}
    return _spec(directory, "\n" + yaml.safe_dump([entry]))


def _fake_model(directory: Path) -> Path:
    model = directory / "extra.safetensors"
    model.write_bytes(b"not the weights the spec promises")
    return model


# case -> (write a spec into a directory, break the tree copy, the message the user sees)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path] | None, Callable[[Path], object] | None, str]] = {
    "missing-model-sha256": (
        lambda d: _spec(d, "\n- {path: models/x.safetensors, url: 'https://example.com/x'}\n"),
        None,
        "models[0].sha256: required",
    ),
    "wrong-sha256-on-a-local-file": (
        lambda d: _spec(
            d, f"\n- {{path: models/extra.safetensors, source: {_fake_model(d)}, sha256: '{'0' * 64}'}}\n"
        ),
        None,
        "models[0] (models/extra.safetensors): sha256 mismatch: runtime.yaml says 0000",
    ),
    "wrong-sha256-in-the-tree": (
        _example_model_spec,
        None,
        f"models[0] ({MODEL_PATH}): sha256 mismatch: runtime.yaml says 6ce0161689b3853acaa03779ec93eafe75",
    ),
    "hugging-face-file-missing-offline": (
        lambda d: _spec(
            d,
            "[]\nhuggingface:\n- {repo: openai/clip-vit-large-patch14, revision: '"
            + "a" * 40
            + "', files: [{path: config.json, sha256: '"
            + "1" * 64
            + "'}]}\n",
        ),
        None,
        f"huggingface[0].files[0]: huggingface/hub/models--openai--clip-vit-large-patch14/blobs/{'1' * 64} "
        "is not in the tree and --offline forbids downloading https://huggingface.co/openai/",
    ),
    "tree-file-where-the-contract-needs-a-folder": (
        None,
        lambda t: (t / "stable-diffusion-webui" / "config_states").write_text("not a folder"),
        "stable-diffusion-webui/config_states: the pod contract needs a directory here, the tree has a file",
    ),
    "path-escaping-the-root": (
        lambda d: _spec(d, f"\n- {{path: ../escape.bin, source: {_fake_model(d)}, sha256: '{'0' * 64}'}}\n"),
        None,
        "models[0].path: '../escape.bin': '..' segment escapes the runtime root",
    ),
    "symlink-escaping-the-root": (
        None,
        lambda t: os.symlink("../../../../etc/passwd", t / "stable-diffusion-webui" / "passwd"),
        "stable-diffusion-webui/passwd: symlink to '../../../../etc/passwd' points outside the runtime root",
    ),
    "absolute-symlink": (
        None,
        lambda t: os.symlink("/etc", t / "models" / "etc"),
        "models/etc: symlink to '/etc' points outside the runtime root",
    ),
    "interpreter-mismatch-with-the-spec": (
        lambda d: _spec(d, "[]\n", python="{version: '3.11', path: /usr/bin/python3.11}"),
        None,
        "interpreter mismatch: venv/pyvenv.cfg has version = 3.10.12, "
        "but runtime.yaml python.version is 3.11",
    ),
    "interpreter-mismatch-in-the-venv": (
        lambda d: _spec(d, "[]\n"),
        lambda t: (t / "venv" / "pyvenv.cfg").write_text("home = /usr/local/bin\nversion = 3.10.12\n"),
        "interpreter mismatch: venv/pyvenv.cfg has home = /usr/local/bin, but runtime.yaml python.path is",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_before_any_image_is_written(tmp_path: Path, case: str) -> None:
    make_spec, break_tree, message = BAD_INPUTS[case]
    tree = _copy_tree(tmp_path / "tree")
    if break_tree:
        break_tree(tree)
    spec_path = make_spec(tmp_path) if make_spec else None
    out = tmp_path / "builds" / "out"
    with pytest.raises(BuildError) as caught:
        _build(out, from_dir=tree, spec_path=spec_path)
    assert message in str(caught.value)
    assert not out.exists(), "no disk.raw, image.tar.gz or manifest.json"
    assert not list((tmp_path / "builds").glob(".sdworker-build-*")), "the work directory is cleaned up"


def test_a_declared_local_file_is_added_to_the_image(tmp_path: Path) -> None:
    model = _fake_model(tmp_path)
    digest = _sha256(model)
    spec_path = _spec(
        tmp_path, f"\n- {{path: models/Lora/extra.safetensors, source: {model.name}, sha256: '{digest}'}}\n"
    )
    result = _build(tmp_path / "out", spec_path=spec_path, pack=False)
    entries = {e.path: e for e in result.index.entries}
    assert entries["models/Lora"].type == "dir"
    assert entries["models/Lora/extra.safetensors"].sha256 == digest
    assert result.index.source is not None
    assert result.index.source["kind"] == "dir"
    assert result.index.source["spec"]["metadata"] == {"name": "test"}


def test_the_cli_prints_the_digest_or_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["build", "--from-dir", str(TREE), "--out", str(out), "--no-pack", "--offline"]) == 0
    captured = capsys.readouterr()
    digest = captured.out.strip()
    assert digest == build.read_build_record(out)["digest"]
    assert "content digest" in captured.err
    assert "building the ext4 image" in captured.err
    assert main(["verify", "--root", str(TREE), "--digest", digest, "--mode", "digest"]) == 1
    assert "manifest.json: missing" in capsys.readouterr().out
    bad = main(
        [
            "build",
            "--spec",
            str(_example_model_spec(tmp_path)),
            "--from-dir",
            str(TREE),
            "--out",
            str(tmp_path / "bad"),
            "--offline",
            "--quiet",
        ]
    )
    assert bad == 1
    err = capsys.readouterr().err
    assert err.startswith("error: models[0] (")
    assert "sha256 mismatch" in err
    assert len(err.strip().splitlines()) == 1
    wrong_python = ["--python-path", "/usr/bin/python3.11", "--python-version", "3.11"]
    argv = ["build", "--from-dir", str(TREE), "--out", str(tmp_path / "py"), "--quiet", *wrong_python]
    assert main(argv) == 1
    assert "has version = 3.10.12, but --python-version is 3.11" in capsys.readouterr().err


# --- the pod contract's parts are on every image (issue 12: items 2, 5, 6, 7) ---


def _files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_every_image_carries_the_pod_contracts_folders_and_the_built_in_extension(
    twice: tuple[build.BuildResult, build.BuildResult],
) -> None:
    entries = {e.path: e for e in twice[0].index.entries}
    for folder in (
        "stable-diffusion-webui/config_states",
        "stable-diffusion-webui/extensions-builtin",
        "models/Stable-diffusion",
        "models/Lora",
        "models/VAE",
        "models/embeddings",
        "models/hypernetworks",
        "huggingface/hub",
    ):
        assert entries[folder].type == "dir", folder
    ours = _files_under(extension_dir())
    assert ours, "the built-in extension has files"
    for relative in ours:
        entry = entries[f"{layout.BUILTIN_EXTENSION_DIR}/{relative}"]
        assert entry.sha256 == hashlib.sha256(ours[relative]).hexdigest(), relative


def test_a_tree_copy_of_the_extension_is_replaced_by_the_builders(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path / "tree")
    stale = tree / layout.BUILTIN_EXTENSION_DIR / "scripts" / "old.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("print('stale')\n")
    result = _build(tmp_path / "out", from_dir=tree, pack=False)
    paths = {e.path for e in result.index.entries}
    assert f"{layout.BUILTIN_EXTENSION_DIR}/scripts/old.py" not in paths
    assert {f"{layout.BUILTIN_EXTENSION_DIR}/{r}" for r in _files_under(extension_dir())} <= paths
    assert stale.exists(), "the user's tree is not modified"


def test_a_hugging_face_repo_becomes_a_hub_cache_with_verified_blobs(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path / "tree")
    files = {"config.json": b'{"model_type": "clip"}', "tokenizer/vocab.json": b'{"a": 0}'}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    hub = tree / "huggingface" / "hub" / "models--openai--clip-vit-large-patch14" / "blobs"
    hub.mkdir(parents=True)
    for name, data in files.items():
        (hub / digests[name]).write_bytes(data)
    revision = "b" * 40
    listed = ", ".join(f"{{path: {n}, sha256: '{d}'}}" for n, d in digests.items())
    repo_entry = f"{{repo: openai/clip-vit-large-patch14, revision: '{revision}', files: [{listed}]}}"
    spec_path = _spec(tmp_path, f"[]\nhuggingface:\n- {repo_entry}\n")
    result = _build(tmp_path / "out", from_dir=tree, spec_path=spec_path, pack=False)
    entries = {e.path: e for e in result.index.entries}
    repo = "huggingface/hub/models--openai--clip-vit-large-patch14"
    assert entries[f"{repo}/refs/main"].sha256 == hashlib.sha256(revision.encode()).hexdigest()
    assert entries["huggingface/hub/version.txt"].sha256 == hashlib.sha256(b"1").hexdigest()
    config = entries[f"{repo}/snapshots/{revision}/config.json"]
    assert (config.type, config.target) == ("symlink", f"../../blobs/{digests['config.json']}")
    vocab = entries[f"{repo}/snapshots/{revision}/tokenizer/vocab.json"]
    assert (vocab.type, vocab.target) == ("symlink", f"../../../blobs/{digests['tokenizer/vocab.json']}")
    for name, digest in digests.items():
        assert entries[f"{repo}/blobs/{digest}"].sha256 == digest, name
    # A blob whose bytes are not what runtime.yaml says fails the build, naming the field.
    (hub / digests["config.json"]).write_bytes(b"tampered")
    with pytest.raises(BuildError, match=r"huggingface\[0\]\.files\[0\] \(huggingface/hub/.*sha256 mismatch"):
        _build(tmp_path / "again", from_dir=tree, spec_path=spec_path, pack=False)
