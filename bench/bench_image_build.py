"""``sdworker image build`` stage by stage against each stage's floor, measured side by side in one run.

Why: the builder hashes the tree (copying it into a staging directory as it goes), has mkfs.ext4 read it
into the image, normalises owners and times with debugfs, checks the result with e2fsck and packs a sparse
tar.gz. Each of those has a floor: the plain tool doing the same job with nothing of ours around it. This
runs both on the same synthetic tree, in the same run, and reports each stage next to its floor and the
whole build against the sum of the floors (the goal: within 1.5x).

Floors (each one timed the same way as the build: ``sync`` before, its own ``sync`` included):

* hash: ``find -type f -print0 | xargs -0 -P N sha256sum``, N = the builder's hashing threads
  (``tree.hash_workers``);
* mkfs: ``mkfs.ext4 -d TREE`` into a sparse file of the build's disk size, with the builder's own
  ``mke2fs.conf`` (same features, no journal) and nothing else (no UUID/hash seed/time pinning);
* pack: ``tar --format=oldgnu --sparse -cf - disk.raw | pigz -LEVEL -n -p N`` on the build's own
  ``disk.raw`` at the builder's gzip level; without pigz, the builder's ``pgzip`` stands in (said so).

Normalisation (debugfs), the filesystem check (e2fsck) and the scan have no floor of their own: they are
overhead the floors do not pay, so they count against the build. ``cp -r`` of the tree is printed for scale.
Next to each wall time is the CPU time it cost (user + system, this process's threads and the children it
waited for; the build's per stage comes from its own ``Progress`` timings, the same ones ``build.json``
records): on a shared machine the wall times also measure the neighbours, the CPU times much less so.

The synthetic tree is shaped like a runtime: ~25% of the bytes in many small files under
``venv/lib/python3.10/site-packages`` (default 20,000) and the rest in one model file, plus the venv's
``pyvenv.cfg`` and interpreter links so the builder's checks pass. Contents are random (sliced from a 64 MiB
random pool), so gzip cannot compress them and nothing can treat them as holes. The page cache is warm for
every step (the tree was just written). Results (JSON and a markdown table) go to ``bench/results/``;
nothing is asserted; the work directory is removed at the end.

    python bench/bench_image_build.py                          # 2 GB, 20,000 files
    python bench/bench_image_build.py --size-gb 0.5 --files 5000   # the quick variant (make bench-quick)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sdworker_images import build, ext4, pack, proc, tree
from sdworker_images.pgzip import ParallelGzipWriter
from sdworker_images.progress import Progress, cpu_seconds, human_bytes

GB = 1_000_000_000
MIB = 1 << 20
POOL_BYTES = 64 * MIB
SMALL_SHARE = 0.25
RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")

# Build stage -> the floor it is measured against (None: no floor, pure overhead).
STAGE_FLOORS: dict[str, str | None] = {
    "scan": None,
    "stage": "hash",
    "mkfs": "mkfs",
    "normalize": None,
    "fsck": None,
    "pack": "pack",
}


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


def timed(step: Callable[[], T], cpu: dict[str, float] | None = None, key: str = "") -> tuple[T, float]:
    """Run ``step`` between two syncs; wall seconds, and CPU seconds (own + children) into ``cpu[key]``."""
    os.sync()
    start, cpu_start = time.monotonic(), cpu_seconds()
    result = step()
    os.sync()
    if cpu is not None:
        cpu[key] = cpu_seconds() - cpu_start
    return result, time.monotonic() - start


def _shell(command: str, cwd: Path | None = None) -> None:
    # The floors are shell pipelines on purpose: that is what "the plain tools" means.
    proc.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd)


def floor_hash(tree_dir: Path, workers: int) -> None:
    _shell(f"find . -type f -print0 | xargs -0 -n 256 -P {workers} sha256sum > /dev/null", cwd=tree_dir)


def floor_mkfs(tree_dir: Path, image: Path, size_bytes: int) -> None:
    conf = image.with_suffix(".conf")
    conf.write_text(ext4.MKE2FS_CONF)
    with image.open("xb") as handle:
        handle.truncate(size_bytes)
    mkfs = proc.require("mkfs.ext4", "e2fsprogs")
    proc.run(
        [mkfs, "-q", "-F", "-t", "ext4", "-d", str(tree_dir), str(image)], env={"MKE2FS_CONFIG": str(conf)}
    )


def floor_pack(raw: Path, archive: Path, level: int, workers: int, pigz: str | None) -> None:
    tar = f"tar --format=oldgnu --sparse -cf - {raw.name}"
    if pigz:
        _shell(f"{tar} | {pigz} -{level} -n -p {workers} > {archive}", cwd=raw.parent)
        return
    # Streaming a child's stdout is something only this fallback needs, so it is not in ``proc``.
    child = subprocess.Popen(["bash", "-c", tar], cwd=raw.parent, stdout=subprocess.PIPE)
    assert child.stdout is not None
    with archive.open("wb") as out, ParallelGzipWriter(out, level=level, workers=workers) as gz:
        while chunk := child.stdout.read(MIB):
            gz.write(chunk)
    if child.wait() != 0:
        raise RuntimeError("tar failed")


def _tool_version(argv: list[str]) -> str:
    try:
        done = proc.run(argv, check=False)
    except proc.CommandError:
        return "absent"
    return (done.stdout + done.stderr).strip().splitlines()[0]


def run(args: argparse.Namespace) -> dict[str, Any]:
    # The floors get the builder's own parallelism: its hashing threads, and gzip on every core.
    hashers = getattr(tree, "hash_workers", lambda: 1)()
    workers = os.cpu_count() or 1
    pigz = None if args.no_pigz else shutil.which("pigz")
    work = Path(tempfile.mkdtemp(prefix="sdworker-bench-image-", dir=args.workdir))
    try:
        tree_dir = work / "tree"
        (files, tree_bytes), gen_s = timed(lambda: make_tree(tree_dir, int(args.size_gb * GB), args.files))
        print(
            f"tree: {files} files, {tree_bytes / GB:.2f} GB ({human_bytes(tree_bytes)}), made in {gen_s:.1f}s"
        )
        load_before = os.getloadavg()

        options = build.BuildOptions(
            out=work / "out", from_dir=tree_dir, offline=True, gzip_level=args.gzip_level
        )
        progress = Progress(quiet=not args.verbose)
        cpu: dict[str, float] = {}
        result, build_s = timed(lambda: build.build(options, progress), cpu, "build")
        record = build.read_build_record(result.out)

        floors: dict[str, float] = {}
        floor_cpu: dict[str, float] = {}
        _, floors["hash"] = timed(lambda: floor_hash(tree_dir, hashers), floor_cpu, "hash")
        _, floors["mkfs"] = timed(
            lambda: floor_mkfs(tree_dir, work / "floor.img", result.disk_bytes), floor_cpu, "mkfs"
        )
        (work / "floor.img").unlink()
        _, floors["pack"] = timed(
            lambda: floor_pack(result.raw, work / "floor.tar.gz", args.gzip_level, workers, pigz),
            floor_cpu,
            "pack",
        )
        (work / "floor.tar.gz").unlink()
        _, cp_s = timed(lambda: proc.run(["cp", "-r", str(tree_dir), str(work / "copy")]))
        shutil.rmtree(work / "copy")
        load_after = os.getloadavg()

        timings = {k: float(v) for k, v in result.timings.items()}
        accounted = sum(timings.values())
        stages = []
        for name, seconds in timings.items():
            floor_name = STAGE_FLOORS.get(name)
            floor = floors.get(floor_name) if floor_name else None
            floor_cpu_s = floor_cpu.get(floor_name) if floor_name else None
            stage_cpu = progress.cpu_timings.get(name, 0.0)
            stages.append(
                {
                    "stage": name,
                    "seconds": round(seconds, 3),
                    "cpuSeconds": round(stage_cpu, 3),
                    "floor": floor_name,
                    "floorSeconds": round(floor, 3) if floor is not None else None,
                    "floorCpuSeconds": round(floor_cpu_s, 3) if floor_cpu_s is not None else None,
                    "ratio": round(seconds / floor, 2) if floor else None,
                }
            )
        floor_sum = sum(floors.values())
        raw_stat = result.raw.stat()
        return {
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "loadavgBefore": [round(x, 2) for x in load_before],
                "loadavgAfter": [round(x, 2) for x in load_after],
                "mkfs": _tool_version(["mkfs.ext4", "-V"]),
                "tar": _tool_version(["tar", "--version"]),
                "pigz": _tool_version([pigz, "--version"]) if pigz else "absent: pgzip stands in",
            },
            "tree": {"files": files, "bytes": tree_bytes, "sizeGb": args.size_gb, "smallFiles": args.files},
            "hashWorkers": hashers,
            "gzipWorkers": workers,
            "gzipLevel": args.gzip_level,
            "digest": result.digest,
            "buildSeconds": round(build_s, 3),
            "buildOutsideStagesSeconds": round(build_s - accounted, 3),
            "buildJsonTimings": record.get("timingsSeconds"),
            "stages": stages,
            "floors": {k: round(v, 3) for k, v in floors.items()},
            "floorSumSeconds": round(floor_sum, 3),
            "ratioWholeToFloors": round(build_s / floor_sum, 3),
            "buildCpuSeconds": round(cpu["build"], 3),
            "floorCpuSumSeconds": round(sum(floor_cpu.values()), 3),
            "cpuRatioWholeToFloors": round(cpu["build"] / sum(floor_cpu.values()), 3),
            "cpSeconds": round(cp_s, 3),
            "disk": {"apparent": raw_stat.st_size, "allocated": raw_stat.st_blocks * 512},
            "archiveBytes": result.archive_bytes,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(report: dict[str, Any]) -> str:
    tree_info, machine = report["tree"], report["machine"]
    pack_floor = "pigz" if not machine["pigz"].startswith("absent") else "pgzip (pigz absent)"
    lines = [
        f"Image build, {tree_info['bytes'] / GB:.2f} GB / {tree_info['files']} files, "
        f"{machine['cpus']} CPUs (load {machine['loadavgBefore'][0]} -> {machine['loadavgAfter'][0]}), "
        f"{machine['mkfs']}, gzip -{report['gzipLevel']}, {report['when']}",
        "",
        "| stage | build (s) | build CPU (s) | floor | floor (s) | floor CPU (s) | build / floor |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    floor_labels = {
        "hash": f"sha256sum, xargs -P {report['hashWorkers']}",
        "mkfs": "mkfs.ext4 -d",
        "pack": f"tar --sparse \\| {pack_floor}",
    }
    for stage in report["stages"]:
        floor, floor_s, ratio = stage["floor"], stage["floorSeconds"], stage["ratio"]
        label = floor_labels[floor] if floor else "-"
        floor_text = "" if floor_s is None else f"{floor_s:.2f}"
        floor_cpu = "" if stage["floorCpuSeconds"] is None else f"{stage['floorCpuSeconds']:.2f}"
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        lines.append(
            f"| {stage['stage']} | {stage['seconds']:.2f} | {stage['cpuSeconds']:.2f} | {label} | "
            f"{floor_text} | {floor_cpu} | {ratio_text} |"
        )
    lines += [
        f"| other (manifest, moves, sync) | {report['buildOutsideStagesSeconds']:.2f} | | - | | | |",
        f"| **whole build** | **{report['buildSeconds']:.2f}** | **{report['buildCpuSeconds']:.2f}** | "
        f"**sum of floors** | **{report['floorSumSeconds']:.2f}** | **{report['floorCpuSumSeconds']:.2f}** | "
        f"**{report['ratioWholeToFloors']:.2f}x** (CPU {report['cpuRatioWholeToFloors']:.2f}x) |",
        f"| (cp -r, for scale) | | | cp -r | {report['cpSeconds']:.2f} | | |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0, help="tree size in GB (10^9 bytes)")
    parser.add_argument("--files", type=int, default=20_000, help="number of small files")
    parser.add_argument("--workdir", type=Path, default=None, help="where to work (default: a temp dir)")
    parser.add_argument("--gzip-level", type=int, default=pack.DEFAULT_GZIP_LEVEL)
    parser.add_argument("--no-pigz", action="store_true", help="use the builder's pgzip as the pack floor")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and table go")
    parser.add_argument("--verbose", action="store_true", help="show the builder's progress lines")
    args = parser.parse_args(argv)

    report = run(args)
    table = markdown(report)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"image_build-{args.size_gb:g}gb-{args.files}"
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(table)
    print(f"digest: {report['digest']}")
    print(table)
    print(f"wrote {args.results}/{stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
