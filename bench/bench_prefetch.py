"""Parallel prefetch vs a plain sequential read of the same file, cold cache each time, in one run.

Why: the agent warms the page cache with many readers (``sdworker_agent.prefetch``) on the claim that a
fresh persistent disk serves one reader slowly and many readers much faster. This measures that claim on
whatever disk the file lives on, with the agent's own code, and prints the figures and the ratio.

Each round evicts the file from the page cache, reads it sequentially (one thread, 1 MiB reads: what
``cat`` does), evicts it again and prefetches it (N threads, chunked ``pread``); the order alternates
between rounds so neither side always runs second. A warm read is printed as a reference: a cold read much
slower than it shows the eviction worked.

Eviction is ``posix_fadvise(POSIX_FADV_DONTNEED)`` on the file by default: it drops exactly this file's
clean pages and leaves the rest of a shared machine's cache alone. ``--drop-caches`` writes 3 to
``/proc/sys/vm/drop_caches`` instead (root; global). With ``--loop`` the file is read through the path the
agent uses: an ext4 image on a read-only loop device with direct I/O (so the backing file's own cache
cannot serve reads), mounted ``ro,noload``. Results are printed, never asserted.

    python bench/bench_prefetch.py --size-mb 1024 --workers 16 --rounds 3 --loop
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sdworker_agent import prefetch

MB = 1_000_000
MIB = 1 << 20


def write_file(path: Path, size_mb: int) -> None:
    block = os.urandom(16 * MIB)
    with path.open("wb") as f:
        remaining = size_mb * MIB
        while remaining:
            # Vary each block a little so no layer below can deduplicate or compress the file away.
            chunk = os.urandom(64) + block[64 : min(len(block), remaining)]
            f.write(chunk)
            remaining -= len(chunk)
        f.flush()
        os.fsync(f.fileno())


def run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def loop_mounted(workdir: Path, source: Path) -> Iterator[Path]:
    """``source`` inside an ext4 image on a read-only, direct-I/O loop device mounted ``ro,noload``."""
    tree = workdir / "tree"
    tree.mkdir()
    try:
        os.link(source, tree / source.name)
    except OSError:  # another filesystem: mkfs copies the content either way
        shutil.copyfile(source, tree / source.name)
    image = workdir / "runtime.ext4"
    with image.open("wb") as f:
        f.truncate(source.stat().st_size + source.stat().st_size // 8 + 64 * MIB)
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", str(tree), str(image)])
    (tree / source.name).unlink()
    loop = run(["losetup", "--find", "--show", "--read-only", "--direct-io=on", str(image)]).strip()
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    try:
        run(["mount", "-t", "ext4", "-o", "ro,noload", loop, str(mountpoint)])
        try:
            yield mountpoint / source.name
        finally:
            run(["umount", str(mountpoint)])
    finally:
        run(["losetup", "-d", loop])


def evictor(global_drop: bool) -> Callable[[str], None]:
    def drop(path: str) -> None:
        if global_drop:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        else:
            prefetch.evict(path)

    return drop


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", type=Path, help="an existing file to read (default: create one)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to create the file")
    p.add_argument("--size-mb", type=int, default=512, help="size of the created file in MiB")
    p.add_argument("--workers", type=int, default=prefetch.DEFAULT_WORKERS, help="parallel readers")
    p.add_argument(
        "--chunk-mb", type=int, default=prefetch.DEFAULT_CHUNK_BYTES // MIB, help="chunk size, MiB"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drop-caches", action="store_true", help="evict with /proc/sys/vm/drop_caches (global)")
    p.add_argument("--loop", action="store_true", help="read through ext4 on a direct-I/O loop device")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-prefetch-") as tmp:
        work = Path(tmp)
        source = args.path
        if source is None:
            source = work / "model.safetensors"
            print(f"writing {args.size_mb} MiB to {source} ...", flush=True)
            write_file(source, args.size_mb)
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(loop_mounted(work, source)) if args.loop else source
            return bench(str(target), args)


def bench(path: str, args: argparse.Namespace) -> int:
    drop = evictor(args.drop_caches)
    size = os.stat(path).st_size
    how = "drop_caches (global)" if args.drop_caches else "posix_fadvise(DONTNEED) on the file"
    print(f"file: {path} ({size / MB:.0f} MB){' via ext4 on a direct-I/O loop device' if args.loop else ''}")
    print(f"cold cache before every read: {how}")
    print(
        f"parallel: {args.workers} readers x {args.chunk_mb} MiB chunks; sequential: 1 reader, 1 MiB reads\n"
    )
    sequential: list[float] = []
    parallel: list[float] = []
    print(f"{'round':>5}  {'sequential MB/s':>16}  {'parallel MB/s':>14}")
    for i in range(args.rounds):
        order = ("seq", "par") if i % 2 == 0 else ("par", "seq")
        results: dict[str, prefetch.ReadStats] = {}
        for kind in order:
            drop(path)
            if kind == "seq":
                results[kind] = prefetch.read_sequential(path)
            else:
                results[kind] = prefetch.read_parallel(
                    [path], workers=args.workers, chunk_bytes=args.chunk_mb * MIB
                )
        assert results["seq"].bytes == results["par"].bytes == size
        sequential.append(results["seq"].throughput_mbps)
        parallel.append(results["par"].throughput_mbps)
        print(f"{i + 1:>5}  {sequential[-1]:>16.1f}  {parallel[-1]:>14.1f}")
    warm = prefetch.read_sequential(path)  # the parallel or sequential run just cached it
    seq, par = statistics.median(sequential), statistics.median(parallel)
    print(f"\nmedian sequential: {seq:.1f} MB/s ({size / MB / seq:.2f} s)")
    print(f"median parallel:   {par:.1f} MB/s ({size / MB / par:.2f} s)")
    print(f"ratio parallel/sequential: {par / seq:.2f}x")
    print(f"warm page cache (reference): {warm.throughput_mbps:.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
