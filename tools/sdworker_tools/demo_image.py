"""The runtime image of the demo and the user-journey test: built and published as a user would.

The tree is the example runtime with the faithful stand-in webui (``examples/runtime-tree``) and what
``standin_runtime.assemble`` adds (its Python 3.10 libraries, the Hugging Face cache, our built-in
extension), so SD pods run a real webui-like process from the disk. ``sdworker image build`` turns it into an
image (cached by content), ``sdworker image publish`` puts it into the compute API simulator; nothing about
the image is written by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sdworker_content.index import INDEX_NAME, ContentIndex
from sdworker_images.webui_extension import extension_dir
from sdworker_tools import procs, standin_runtime
from sdworker_tools.computesim import ComputeSim

REPO = Path(__file__).resolve().parents[2]


def env_with(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _file_lines(root: Path, paths: list[Path]) -> Iterator[bytes]:
    """One line per link or file under ``root``: its path and target or content hash."""
    for path in sorted(paths):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            yield f"L {rel} {os.readlink(path)}\n".encode()
        elif path.is_file():
            yield f"F {rel} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode()


def _sources(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if "__pycache__" not in p.parts]


def tree_hash(tree: Path) -> str:
    """A short content hash of ``tree`` and of the builder's sources, the content index's included (a new
    builder or index format rebuilds)."""
    lines = [*_file_lines(tree, list(tree.rglob("*")))]
    for sources in (REPO / "images" / "sdworker_images", REPO / "content" / "sdworker_content"):
        lines += _file_lines(sources, _sources(sources))
    return hashlib.sha256(b"".join(lines)).hexdigest()[:16]


def standin_tree() -> Path:
    """The assembled stand-in runtime tree, cached by the content of what it is made from."""
    lines = [
        *(
            line
            for root in (standin_runtime.EXAMPLE_TREE, extension_dir())
            for line in _file_lines(root, _sources(root))
        ),
        standin_runtime.REQUIREMENTS.read_bytes(),
        Path(standin_runtime.__file__).read_bytes(),
    ]
    dest = standin_runtime.cache_root() / "standin-tree" / hashlib.sha256(b"".join(lines)).hexdigest()[:16]
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="tree.", dir=dest.parent))
        try:
            standin_runtime.assemble(staging / "tree")
            (staging / "tree").rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def build_image(tree: Path, *, log: Callable[[str], None] = print) -> tuple[Path, str]:
    """The build directory (``sdworker image build --out``) and its content digest, built once per tree
    content and builder version."""
    out = standin_runtime.cache_root() / "demo-runtime" / tree_hash(tree)
    manifest_file = out / INDEX_NAME
    if not all((out / f).is_file() for f in ("disk.raw", "image.tar.gz", "build.json", manifest_file.name)):
        log(f"[image] building the runtime disk image from {tree} (cached in {out})")
        shutil.rmtree(out, ignore_errors=True)
        argv = [sys.executable, "-m", "sdworker_images", "build", "--from-dir", str(tree), "--out", str(out)]
        procs.run([*argv, "--quiet"], env=env_with(REPO / "images"), timeout=900)
    else:
        log(f"[image] runtime disk image cached: {out}")
    digest = ContentIndex.from_json(manifest_file.read_bytes()).digest
    return out, digest


def publish_image(build_dir: Path, sim: ComputeSim, *, project: str, family: str) -> str:
    """``sdworker image publish`` into the simulator: the image carries what the publisher writes."""
    argv = [sys.executable, "-m", "sdworker_images", "publish", "--build-dir", str(build_dir)]
    argv += ["--project", project, "--family", family, "--upload-dir", str(sim.state_dir / "uploads")]
    argv += ["--api-endpoint", sim.endpoint]
    return procs.run(argv, env=env_with(REPO / "images"), timeout=600).stdout.strip()
