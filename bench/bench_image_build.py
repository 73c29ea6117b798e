"""Building a runtime disk image vs a plain ``cp -r`` of the same tree, measured side by side in one run.

Why: the builder copies the tree once (hashing as it goes), has mkfs.ext4 read it again into the image,
fixes inode times with debugfs, checks the result with e2fsck and packs a sparse tar.gz. This shows what
that costs next to the cheapest thing one could do with the same bytes, on the same disk, in the same run,
and how big the image and the archive come out.

The synthetic tree is shaped like a runtime: ~25% of the bytes in many small files under
``venv/lib/python3.10/site-packages`` (default 20,000 files) and the rest in one model file, plus the venv's
``pyvenv.cfg`` and interpreter links so the builder's checks pass. Contents are random (sliced from a 64 MiB
random pool, so gzip cannot compress them and no layer can treat them as holes). Page cache is warm for both
sides (the tree was just written); every timed step starts after a ``sync`` and includes its own ``sync``,
so each is charged for the writes it causes. Results are printed, never asserted; the work directory is
removed at the end.

    PYTHONPATH=images:operator python bench/bench_image_build.py            # 2 GB
    PYTHONPATH=images:operator python bench/bench_image_build.py --size-gb 0.5 --files 5000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sdworker_images import build, pack, proc
from sdworker_images.progress import Progress, human_bytes

GB = 1_000_000_000
MIB = 1 << 20
POOL_BYTES = 64 * MIB
SMALL_SHARE = 0.25
T = TypeVar("T")


def _write(path: Path, size: int, pool: bytes, rng: random.Random) -> None:
    with path.open("wb") as handle:
        while size > 0:
            take = min(size, 4 * MIB)
            start = rng.randrange(0, len(pool) - take)
            handle.write(pool[start : start + take])
            size -= take


def make_tree(root: Path, total_bytes: int, small_files: int) -> tuple[int, int]:
    """Write the synthetic runtime tree; returns (files, bytes)."""
    rng = random.Random(20240727)
    pool = rng.randbytes(POOL_BYTES)
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.10.12\n"
    )
    os.symlink("/usr/bin/python3.10", venv / "bin" / "python")
    os.symlink("python", venv / "bin" / "python3")
    os.symlink("python", venv / "bin" / "python3.10")
    site = venv / "lib" / "python3.10" / "site-packages"
    small_total = int(total_bytes * SMALL_SHARE)
    # Sizes spread like a site-packages: most files a few KiB, some tens of KiB.
    weights = [rng.lognormvariate(0, 1.2) for _ in range(small_files)]
    scale = small_total / sum(weights)
    written = 0
    for i, weight in enumerate(weights):
        directory = site / f"pkg{i // 250:03d}" / f"sub{(i // 25) % 10}"
        directory.mkdir(parents=True, exist_ok=True)
        size = max(1, int(weight * scale))
        _write(directory / f"module_{i:05d}.py", size, pool, rng)
        written += size
    model = root / "models" / "Stable-diffusion" / "synthetic.safetensors"
    model.parent.mkdir(parents=True)
    model_bytes = max(0, total_bytes - written)
    _write(model, model_bytes, pool, rng)
    return small_files + 2, written + model_bytes + len((venv / "pyvenv.cfg").read_bytes())


def timed(step: Callable[[], T]) -> tuple[T, float]:
    os.sync()
    start = time.monotonic()
    result = step()
    os.sync()
    return result, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0, help="tree size in GB (10^9 bytes)")
    parser.add_argument("--files", type=int, default=20_000, help="number of small files")
    parser.add_argument("--workdir", type=Path, default=None, help="where to work (default: a temp dir)")
    parser.add_argument("--gzip-level", type=int, default=pack.DEFAULT_GZIP_LEVEL)
    parser.add_argument("--verbose", action="store_true", help="show the builder's progress lines")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sdworker-bench-image-", dir=args.workdir))
    try:
        tree = work / "tree"
        (files, tree_bytes), gen_s = timed(lambda: make_tree(tree, int(args.size_gb * GB), args.files))
        print(
            f"tree: {files} files, {tree_bytes / GB:.2f} GB ({human_bytes(tree_bytes)}), made in {gen_s:.1f}s"
        )

        _, cp_s = timed(lambda: proc.run(["cp", "-r", str(tree), str(work / "copy")]))
        shutil.rmtree(work / "copy")

        options = build.BuildOptions(
            out=work / "out", from_dir=tree, offline=True, gzip_level=args.gzip_level
        )
        result, build_s = timed(lambda: build.build(options, Progress(quiet=not args.verbose)))

        raw = result.raw.stat()
        allocated = raw.st_blocks * 512
        archive = result.archive_bytes or 0
        print(f"digest: {result.digest}")
        print(f"{'cp -r (+ sync)':<34}{cp_s:8.1f} s   {tree_bytes / cp_s / 1e6:7.0f} MB/s")
        print(f"{'build total (+ sync)':<34}{build_s:8.1f} s   {tree_bytes / build_s / 1e6:7.0f} MB/s")
        for phase, seconds in result.timings.items():
            print(f"  {phase:<32}{seconds:8.1f} s")
        print(f"{'build / cp -r':<34}{build_s / cp_s:8.2f} x")
        without_pack = build_s - result.timings.get("pack", 0.0)
        print(f"{'build without pack / cp -r':<34}{without_pack / cp_s:8.2f} x")
        print(
            f"disk.raw: {raw.st_size / GB:.2f} GB apparent ({raw.st_size // (1 << 30)} GiB), "
            f"{allocated / GB:.2f} GB allocated; {allocated / tree_bytes:.3f} x the tree"
        )
        ratio = archive / tree_bytes
        print(f"image.tar.gz: {archive / GB:.2f} GB; {ratio:.3f} x the tree (gzip -{args.gzip_level})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
