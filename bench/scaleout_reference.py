"""The reference: the published DaemonSet's init (``bench/reference/attach-disk.sh``), one per node.

It drives the real ``gcloud`` CLI against a fresh compute simulator with the same latency profile and write
quota as the sdworker run; no Kubernetes (the script needs none). Its clock starts at the node's creation,
so the DaemonSet pod's scheduling and image pull are not charged to it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.scaleout_probe import REPO, Json, runtime_image, say, sim_get, sim_profile
from bench.scaleout_scenarios import Scenario

from sdworker_tools import demo, procs
from sdworker_tools.computesim import ComputeSim, SimConfig
from sdworker_tools.computesim import gcloud as simgcloud
from sdworker_tools.demo_image import publish_image
from sdworker_tools.wait import wait_for

REFERENCE_SCRIPT = REPO / "bench" / "reference" / "attach-disk.sh"


def _create_pool_disks(sim: ComputeSim, image: str, count: int) -> None:
    """The reference's pool: ``sd-lib-disk-*`` disks left free by earlier nodes (made through the API)."""
    for i in range(count):
        body = json.dumps({"name": f"sd-lib-disk-pool-{i}", "sizeGb": "30", "sourceImage": image}).encode()
        url = f"{sim.api_base}projects/{demo.PROJECT}/zones/{demo.ZONE}/disks"
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, data=body, method="POST"), timeout=30
                ):
                    break
            except urllib.error.HTTPError as err:
                if err.code != 403:  # 403: over the write quota; try again
                    raise
                time.sleep(0.2)

    def ready() -> bool:
        disks = sim.inventory().get("disks") or []
        names = [str(d.get("name", "")) for d in disks if d.get("status") == "READY"]
        return sum(n.startswith("sd-lib-disk-pool-") for n in names) >= count

    wait_for(ready, timeout=600, what=f"{count} reference pool disks READY")


def run_reference(sc: Scenario, latency: str, quota: float, timeout: float) -> Json:
    workdir = Path(tempfile.mkdtemp(prefix="sdworker-bench-ref-"))
    sim = ComputeSim(
        SimConfig(latency=latency, seed=1, write_quota_per_s=quota, write_quota_burst=quota)
    ).start()
    mounts: list[Path] = []
    try:
        build_dir = runtime_image()
        image = publish_image(build_dir, sim, project=demo.PROJECT, family=demo.FAMILY)
        image_name = image.rsplit("/", 1)[-1]
        env = simgcloud.write_config(workdir / "gcloud", sim.api_base, demo.PROJECT)
        if sc.mode == "pool":
            _create_pool_disks(sim, image, sc.nodes)
        req0 = max((r["seq"] for r in sim_get(sim, "requests")), default=0)
        ops0 = len(sim_get(sim, "operations"))
        rusage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        say(f"[bench] {sc.name} reference: {sc.nodes} attach-disk.sh in parallel ({sc.join})")
        running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        created: dict[str, float] = {}
        started = time.time()
        for i in range(sc.nodes):
            name = f"gpu-node-{i}"
            sim.create_instance(name, zone=demo.ZONE, project=demo.PROJECT)
            mount_dir = workdir / "hosts" / name / "var" / "lib" / "runtime-lib"
            mounts.append(mount_dir)
            marks = workdir / f"marks-{name}"
            log = (workdir / f"ref-{name}.log").open("wb")
            created[name] = time.time()
            proc = subprocess.Popen(
                ["bash", str(REFERENCE_SCRIPT)],
                env={
                    **env,
                    "MY_NODE_NAME": name,
                    "IMAGE_NAME": image_name,
                    "DEV_ROOT": str(sim.dev_root(name)),
                    "MOUNT_DIR": str(mount_dir),
                    "MARKS": str(marks),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            running.append((name, proc, marks))
            if sc.join == "ramp":
                time.sleep(sc.interval)
        for name, proc, _ in running:
            try:
                proc.wait(timeout=max(1.0, timeout - (time.time() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                say(f"[bench] reference {name} not done after {timeout:.0f}s")
        finished = time.time()
        rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
        nodes = {}
        for name, proc, marks in running:
            steps = [ln.split() for ln in marks.read_text().splitlines()] if marks.exists() else []
            nodes[name] = {"rc": proc.returncode, "marks": [[s, float(t)] for s, t in steps]}
        return {
            "started": started,
            "finished": finished,
            "created": created,
            "nodes": nodes,
            "operations": sim_get(sim, "operations", ops0),
            "requests": sim_get(sim, "requests", req0),
            "gcloud": {
                "cpu_s_total": (rusage.ru_utime + rusage.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime),
                "peak_rss_mb_max": rusage.ru_maxrss / 1024,
            },
            "sim_config": sim_profile(sim),
        }
    finally:
        for m in mounts:
            if m.is_dir() and os.path.ismount(m):
                procs.run(["umount", str(m)], check=False)
        sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
