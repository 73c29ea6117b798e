"""Turns a spec into a runtime tree: fetches what it names, and attaches its declared files to a tree's plan.

Two ways in. ``assemble`` builds the whole tree from ``runtime.yaml`` (git checkouts, venv, pip lock, model
files; network via ``fetch``), relocates the venv to the path pods see it at (``/runtime/venv``) and
compiles hash-based pycs. ``declare`` works on any tree, including a ``--from-dir`` one: every model and
file the spec lists must end up in the image with the sha256 the spec gives; files already in the tree are
checked, missing ones are copied from their local ``source``/``file:`` URL or downloaded (not ``--offline``).

Both ways end with the pod contract's fixed parts (``write_layout``, sdworker.runtime_layout): the empty
folders webui needs on a read-only disk, the built-in sdworker extension (always this builder's copy), and
the Hugging Face cache's links and refs. A spec build writes them into its own tree; a ``--from-dir`` build
writes them into an overlay that ``with_layout`` lays over the scanned tree, so the user's tree is not
touched.
"""

from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from sdworker import runtime_layout as layout
from sdworker_images import fetch
from sdworker_images.errors import BuildError
from sdworker_images.progress import Progress
from sdworker_images.spec import VENV_DIR, WEBUI_DIR, FileSpec, RuntimeSpec
from sdworker_images.tree import Item, scan
from sdworker_images.webui_extension import extension_dir

# Where pods mount the runtime (the operator's hostPath volume, docs/architecture.md section 7).
RUNTIME_PREFIX: Final = "/runtime"
_SCRIPT_MAX_BYTES: Final = 1 << 20


@dataclass
class Assembled:
    """A tree the builder made itself (so it may be normalised in place) and the commits it checked out."""

    root: Path
    resolved: dict[str, str] = field(default_factory=dict)


def assemble(spec: RuntimeSpec, work: Path, progress: Progress) -> Assembled:
    """Fetch and install everything ``spec`` names into ``work/tree``."""
    tree = work / "tree"
    tree.mkdir()
    result = Assembled(tree)
    for source in spec.git_sources:
        dest = tree / source.dest
        if dest.exists() and any(dest.iterdir()):
            # An extension named like one of webui's own extensions-builtin/ folders would merge into it.
            raise BuildError(f"{source.where}: {source.dest} already exists in the checked-out webui")
        with progress.step("git", f"checking out {source.repo} at {source.ref}"):
            result.resolved[source.dest] = fetch.git_export(source, dest, work)
    venv = tree / VENV_DIR
    with progress.step("venv", f"creating the venv with {spec.python.path}"):
        fetch.create_venv(spec.python, venv)
    if spec.pip is not None:
        with progress.step("pip", "installing the pip lock (hashes required)"):
            fetch.pip_install(
                venv, spec.resolve(spec.pip.lock), spec.pip, progress.still_running("pip still installing")
            )
    for declared in spec.declared_files:
        target = tree / declared.path
        target.parent.mkdir(parents=True, exist_ok=True)
        local = _materialise(declared, spec, target, progress, offline=False)
        if local != target:
            shutil.copyfile(local, target)
    write_layout(tree, spec)
    fetch.remove_pip(venv)
    relocate_venv(venv, str(venv), f"{RUNTIME_PREFIX}/{VENV_DIR}")
    with progress.step("compile", "compiling hash-based bytecode"):
        # ensurepip leaves timestamp pycs naming the build directory; start from none.
        for cache in sorted(tree.rglob("__pycache__"), reverse=True):
            if cache.is_dir() and not cache.is_symlink():
                shutil.rmtree(cache)
        dirs = [VENV_DIR] + ([WEBUI_DIR] if spec.webui else [])
        fetch.compile_bytecode(venv, tree, dirs, RUNTIME_PREFIX)
    return result


def write_layout(root: Path, spec: RuntimeSpec | None) -> None:
    """Write the pod contract's fixed parts under ``root``: required folders, the built-in extension, and
    each Hugging Face repository's ``refs/main`` and ``snapshots/<revision>/<file>`` links to its blobs.

    The blobs themselves are declared files (``RuntimeSpec.declared_files``), fetched and sha256-checked like
    any model; the links may dangle here until the blobs are in place.
    """
    for folder in layout.REQUIRED_DIRS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    extension = root / layout.BUILTIN_EXTENSION_DIR
    if extension.is_symlink() or extension.is_file():
        raise BuildError(f"{layout.BUILTIN_EXTENSION_DIR}: not a directory in the tree")
    shutil.rmtree(extension, ignore_errors=True)
    source = extension_dir()
    if not source.is_dir():
        raise BuildError(f"the built-in webui extension is missing from this builder ({source})")
    shutil.copytree(source, extension, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if spec is None or not spec.huggingface:
        return
    version = root / layout.HF_CACHE_VERSION_FILE
    version.write_text(layout.HF_CACHE_VERSION)
    for repo in spec.huggingface:
        ref = root / repo.ref_path
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(repo.revision)  # huggingface_hub writes the bare commit, no newline
        for f in repo.files:
            link = root / repo.snapshot_path(f.path)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(repo.blob_link(f.path, f.sha256))


def with_layout(items: Sequence[Item], spec: RuntimeSpec | None, work: Path) -> list[Item]:
    """A ``--from-dir`` tree's plan with the pod contract's parts laid over it (``write_layout`` into an
    overlay in ``work``, scanned). The overlay wins: the tree's copy of the built-in extension is dropped,
    and a tree path where the contract needs a folder must be one."""
    overlay = work / "layout"
    overlay.mkdir()
    write_layout(overlay, spec)
    planned = {
        i.path: i
        for i in items
        if i.path != layout.BUILTIN_EXTENSION_DIR
        and not i.path.startswith(layout.BUILTIN_EXTENSION_DIR + "/")
    }
    for item in scan(overlay):
        present = planned.get(item.path)
        if present is not None and item.type == "dir":
            if present.type != "dir":
                raise BuildError(
                    f"{item.path}: the pod contract needs a directory here, the tree has a {present.type}"
                )
            continue
        if present is not None and present.type == "dir":
            raise BuildError(
                f"{item.path}: the pod contract needs a {item.type} here, the tree has a directory"
            )
        planned[item.path] = item
    return sorted(planned.values(), key=lambda i: i.path)


def relocate_venv(venv: Path, old_prefix: str, new_prefix: str) -> None:
    """Point the venv's scripts (shebangs, ``activate``) at ``new_prefix``, where pods will see it.

    A venv records its absolute path only in these text files; the interpreter itself finds the venv from
    ``pyvenv.cfg`` next to ``bin/``, wherever it is mounted.
    """
    bin_dir = venv / "bin"
    for script in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else []:
        if script.is_symlink() or not script.is_file() or script.stat().st_size > _SCRIPT_MAX_BYTES:
            continue
        data = script.read_bytes()
        if old_prefix.encode() in data and b"\0" not in data:
            script.write_bytes(data.replace(old_prefix.encode(), new_prefix.encode()))
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        # Python 3.11+ records the creating command line, with the builder's work path in it.
        lines = [line for line in cfg.read_text().splitlines() if not line.startswith("command")]
        cfg.write_text("\n".join(lines) + "\n")


def declare(
    items: Sequence[Item],
    spec: RuntimeSpec,
    work: Path,
    progress: Progress,
    *,
    offline: bool,
) -> list[Item]:
    """``items`` with each declared file's expected sha256 attached; missing ones added (copied, fetched)."""
    by_path = {i.path: i for i in items}
    planned = list(items)
    downloads = work / "downloads"
    for declared in spec.declared_files:
        present = by_path.get(declared.path)
        if present is not None:
            if present.type != "file":
                raise BuildError(f"{declared.where}.path: {declared.path} is a {present.type} in the tree")
            index = planned.index(present)
            planned[index] = replace(
                present,
                expected_sha256=declared.sha256,
                declared_by=declared.where,
                executable=present.executable or declared.executable,
            )
            continue
        downloads.mkdir(exist_ok=True)
        local = _materialise(declared, spec, downloads / declared.sha256, progress, offline=offline)
        parts = declared.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in by_path:
                by_path[parent] = Item(parent, "dir")
                planned.append(by_path[parent])
            elif by_path[parent].type != "dir":
                raise BuildError(f"{declared.where}.path: {parent} is a {by_path[parent].type} in the tree")
        item = Item(
            declared.path,
            "file",
            source=local,
            size=local.stat().st_size,
            executable=declared.executable,
            expected_sha256=declared.sha256,
            declared_by=declared.where,
        )
        by_path[declared.path] = item
        planned.append(item)
    planned.sort(key=lambda i: i.path)
    return planned


def _local_source(declared: FileSpec, spec: RuntimeSpec) -> Path | None:
    """The local file a declared file comes from (``source``, or a ``file:`` URL), or None to download."""
    if declared.source is not None:
        local, what = spec.resolve(declared.source), f"{declared.where}.source"
    elif declared.url is not None and declared.url.startswith("file:"):
        local = Path(urllib.request.url2pathname(urllib.parse.urlsplit(declared.url).path))
        what = f"{declared.where}.url"
    else:
        return None
    if not local.is_file():
        raise BuildError(f"{what}: {local} is not a file")
    return local


def _materialise(
    declared: FileSpec, spec: RuntimeSpec, dest: Path, progress: Progress, *, offline: bool
) -> Path:
    """A local file with ``declared``'s bytes: its local source as it is, or a download to ``dest``.

    The sha256 of a local source is checked when the tree is staged, like every other file's.
    """
    local = _local_source(declared, spec)
    if local is not None:
        return local
    assert declared.url is not None
    if offline:
        raise BuildError(
            f"{declared.where}: {declared.path} is not in the tree and --offline forbids downloading "
            f"{declared.url}"
        )
    with progress.step("download", f"downloading {declared.url}"):
        fetch.download(declared.url, dest, declared.sha256)
    return dest
