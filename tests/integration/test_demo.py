"""``sdworker-dev demo --ci``: the whole system end to end, bounded, and nothing left behind.

The demo runs as a subprocess exactly as ``make demo`` runs it (its own control plane, simulator, operator
and agents; the session's cluster is not involved). It must exit 0, which it does only if every SD replica
became Ready on a node whose RuntimeDisk was Ready first; print the cold-start timeline; and leave no
process, mount, loop device or directory of its own behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_bounded_demo_brings_every_replica_up_on_a_ready_runtime_and_cleans_up(tmp_path: Path) -> None:
    env = dict(os.environ)
    chart = tmp_path / "timeline.svg"
    argv = ["demo", "--ci", "--nodes", "2", "--latency", "fast", "--chart", str(chart)]
    result = subprocess.run(
        [sys.executable, "-m", "sdworker_tools", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{out}\n{result.stderr[-3000:]}"

    # The scale-out is labelled as scripted, and the timeline table closes the run.
    assert "[scale-out] SCRIPTED" in out
    header = next(line for line in out.splitlines() if line.startswith("NODE "))
    assert header.split()[:9] == [
        "NODE",
        "PHASE",
        "FROM",
        "DISK",
        "ATTACH",
        "MOUNT",
        "VERIFY",
        "PREFETCH",
        "READY",
    ]
    rows = [line.split() for line in out.splitlines() if line.startswith("gpu-node-")]
    assert sorted(r[0] for r in rows) == ["gpu-node-0", "gpu-node-1"]
    assert all(r[1] == "Ready" for r in rows)
    assert "2/2 Ready; node created -> runtime Ready" in out
    checks = [line for line in out.splitlines() if line.startswith("[check] ")]
    assert len(checks) == 2, out
    assert all("runtime Ready" in line for line in checks)
    assert "[demo] PASS" in out
    svg = ET.parse(chart).getroot()
    labels = "".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert "gpu-node-0 (Ready)" in labels
    assert "gpu-node-1 (Ready)" in labels
    assert "[cleanup] done; nothing left behind" in out

    # Nothing left behind: its directories, processes, mounts and loop devices.
    workdir = re.search(r"work dir (/\S+?)\.? ", out)
    cluster = re.search(r"kubeconfig (/\S+)/admin\.kubeconfig", out)
    state = re.search(r"; state (/\S+)", out)
    assert workdir, out
    assert cluster, out
    assert state, out
    dirs = [workdir.group(1), cluster.group(1), state.group(1)]
    for d in dirs:
        assert not Path(d).exists(), f"{d} left behind"
    assert processes_mentioning(*dirs) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(d in mounts for d in dirs)
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    assert state.group(1) not in loops, loops
