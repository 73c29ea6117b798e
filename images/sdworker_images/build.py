"""``build``: from a spec or a directory to ``disk.raw``, ``image.tar.gz``, ``manifest.json``, ``build.json``.

``manifest.json`` is a copy of the disk's content index (``sdworker_content``), the file nodes verify.

The order is the contract: every check that can fail on the inputs (the spec, names, symlinks, the
interpreter, declared sha256s) runs before mkfs.ext4 writes a byte, and the outputs appear in ``--out``
only when everything succeeded (they are made in a work directory next to it and moved in at the end), so
a failed build leaves no image behind to be published by mistake.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sdworker_content.index import INDEX_DIR, INDEX_NAME, ContentIndex, Interpreter
from sdworker_images import BUILDER_NAME, __version__, assemble, ext4, pack, spec, tree
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress

BUILD_FORMAT: Final = "sdworker.dev/runtime-build/v1"
RAW_NAME: Final = pack.RAW_NAME
ARCHIVE_NAME: Final = "image.tar.gz"
INDEX_COPY: Final = INDEX_NAME
BUILD_RECORD: Final = "build.json"
OUTPUT_NAMES: Final = (RAW_NAME, ARCHIVE_NAME, INDEX_COPY, BUILD_RECORD)
# 2000-01-01T00:00:00Z: every file time in the image. Not 0, which mke2fs reads as "use the clock".
DEFAULT_FIXED_TIME: Final = 946684800


def fixed_time_from_env() -> int:
    """``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) if set and positive, else 2000-01-01."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_FIXED_TIME


@dataclass(frozen=True)
class BuildOptions:
    """What to build from and where to put it; see ``python -m sdworker_images build --help``."""

    out: Path
    spec_path: Path | None = None
    from_dir: Path | None = None
    python: spec.PythonSpec | None = None
    size_gb: int | None = None
    offline: bool = False
    work_dir: Path | None = None
    gzip_level: int = pack.DEFAULT_GZIP_LEVEL
    pack: bool = True
    fixed_time: int = DEFAULT_FIXED_TIME


@dataclass(frozen=True)
class BuildResult:
    digest: str
    index: ContentIndex
    out: Path
    disk_bytes: int
    archive_bytes: int | None
    archive_sha256: str | None
    timings: dict[str, float]

    @property
    def raw(self) -> Path:
        return self.out / RAW_NAME

    @property
    def archive(self) -> Path | None:
        return self.out / ARCHIVE_NAME if self.archive_bytes is not None else None


def build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    runtime = spec.load(options.spec_path) if options.spec_path else None
    if runtime is None and options.from_dir is None:
        raise BuildError("nothing to build: give --spec, --from-dir, or both")
    expected_python = runtime.python if runtime else options.python
    if runtime and options.python and options.python != runtime.python:
        raise BuildError(
            f"--python-path/--python-version ({options.python.path} {options.python.version}) contradict "
            f"runtime.yaml python ({runtime.python.path} {runtime.python.version})"
        )
    work_parent = options.work_dir or options.out.resolve().parent
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sdworker-build-", dir=work_parent))
    try:
        return _build(options, runtime, expected_python, work, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(
    options: BuildOptions,
    runtime: spec.RuntimeSpec | None,
    expected_python: spec.PythonSpec | None,
    work: Path,
    progress: Progress,
) -> BuildResult:
    resolved: dict[str, str] = {}
    if options.from_dir is not None:
        root, in_place = options.from_dir.resolve(), False
    else:
        assert runtime is not None
        if options.offline:
            raise BuildError(
                "a spec build without --from-dir fetches repositories, packages and models; "
                "--offline forbids that"
            )
        assembled = assemble.assemble(runtime, work, progress)
        root, in_place, resolved = assembled.root, True, assembled.resolved

    with progress.step("scan", f"checking {root}"):
        items = tree.scan(root)
        if not in_place:
            # A spec build wrote the pod contract's parts into its own tree; a --from-dir one gets them here.
            items = assemble.with_layout(items, runtime, work)
        interpreter = tree.check_interpreter(root, items, expected_python, from_spec=runtime is not None)
        tree.check_symlinks(items, interpreter.path)
        if runtime is not None:
            items = assemble.declare(items, runtime, work, progress, offline=options.offline)
    progress.note(
        f"{sum(1 for i in items if i.type == 'file')} files, "
        f"{sum(i.size for i in items if i.type == 'file')} bytes; interpreter {interpreter.path} "
        f"{interpreter.version}"
    )

    stage_root = root if in_place else work / "stage"
    if not in_place:
        stage_root.mkdir()
    stage_root.chmod(0o755)
    with progress.step("stage", "hashing" if in_place else "copying and hashing"):
        entries = tree.stage(
            items,
            None if in_place else stage_root,
            fixed_time=options.fixed_time,
            progress=progress.hashing("hashed"),
        )

    index = ContentIndex(
        entries=entries,
        interpreter=interpreter,
        builder={"name": BUILDER_NAME, "version": __version__},
        source=_source_record(runtime, resolved, from_dir=options.from_dir is not None),
    )
    index_text = index.to_json()
    _write_index(stage_root, index_text)
    digest = index.digest
    progress.note(f"content digest {digest}")

    size_gb = options.size_gb or (runtime.image.size_gb if runtime else None)
    size_bytes = size_gb * ext4.GIB if size_gb else ext4.image_size(entries, len(index_text))
    raw = work / RAW_NAME
    with progress.step("mkfs", f"building the ext4 image ({size_bytes // ext4.GIB} GiB, mkfs.ext4 -d)"):
        size_bytes = ext4.make_filesystem(
            stage_root,
            raw,
            size_bytes=size_bytes,
            inodes=ext4.inode_count(entries),
            digest=digest,
            fixed_time=options.fixed_time,
            progress=progress,
            grow=size_gb is None,
        )
    with progress.step("normalize", "fixing owners and times (debugfs)"):
        paths = [e.path for e in entries] + [INDEX_DIR, f"{INDEX_DIR}/{INDEX_NAME}"]
        ext4.normalize_inodes(raw, paths, fixed_time=options.fixed_time, progress=progress, tree=stage_root)
    with progress.step("fsck", "checking the filesystem (e2fsck -fn)"):
        ext4.check_filesystem(raw)

    archive_bytes = archive_sha256 = None
    if options.pack:
        archive = work / ARCHIVE_NAME
        with progress.step("pack", f"packing {ARCHIVE_NAME} (oldgnu, sparse, gzip -{options.gzip_level})"):
            archive_sha256 = pack.pack(
                raw, archive, fixed_time=options.fixed_time, gzip_level=options.gzip_level, progress=progress
            )
            archive_bytes = archive.stat().st_size

    (work / INDEX_COPY).write_text(index_text)
    result = BuildResult(
        digest=digest,
        index=index,
        out=options.out,
        disk_bytes=size_bytes,
        archive_bytes=archive_bytes,
        archive_sha256=archive_sha256,
        timings=dict(progress.timings),
    )
    (work / BUILD_RECORD).write_text(json.dumps(_build_record(result, runtime), indent=2) + "\n")
    _move_outputs(work, options.out)
    progress.note(f"wrote {options.out}/: {', '.join(n for n in OUTPUT_NAMES if (options.out / n).exists())}")
    return result


def _write_index(stage_root: Path, text: str) -> None:
    directory = stage_root / INDEX_DIR
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    path = directory / INDEX_NAME
    path.write_text(text)
    path.chmod(0o644)


def _source_record(
    runtime: spec.RuntimeSpec | None, resolved: dict[str, str], *, from_dir: bool
) -> dict[str, Any]:
    # The spec as written (relative paths, no builder-specific absolute ones), so the index, and with it
    # the image, does not depend on where the build ran.
    return {
        "kind": "dir" if from_dir else "spec",
        "spec": dict(runtime.document) if runtime else None,
        "resolvedCommits": dict(sorted(resolved.items())),
    }


def _build_record(result: BuildResult, runtime: spec.RuntimeSpec | None) -> dict[str, Any]:
    index = result.index
    interpreter: Interpreter | None = index.interpreter
    return {
        "format": BUILD_FORMAT,
        "digest": result.digest,
        "name": runtime.name if runtime else None,
        "family": runtime.image.family if runtime else None,
        "builder": dict(index.builder),
        "interpreter": {"path": interpreter.path, "version": interpreter.version} if interpreter else None,
        "totalBytes": index.total_bytes,
        "fileCount": index.file_count,
        "disk": {"file": RAW_NAME, "bytes": result.disk_bytes, "sizeGb": result.disk_bytes // ext4.GIB},
        "archive": (
            {"file": ARCHIVE_NAME, "bytes": result.archive_bytes, "sha256": result.archive_sha256}
            if result.archive_bytes is not None
            else None
        ),
        "timingsSeconds": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _move_outputs(work: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_NAMES:
        source, target = work / name, out / name
        if source.exists():
            os.replace(source, target)
        else:
            # A stale archive from an earlier --pack build must not sit next to a newer disk.raw.
            target.unlink(missing_ok=True)


def read_build_record(out: Path) -> dict[str, Any]:
    """``build.json`` of a finished build, for ``publish``."""
    path = out / BUILD_RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: not a finished build ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != BUILD_FORMAT:
        raise BuildError(f"{path}: not an sdworker build record")
    return data
