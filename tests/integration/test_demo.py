"""``sdworker-dev demo --ci``: the whole system end to end, bounded, and nothing left behind.

The demo runs as a subprocess exactly as ``make demo`` runs it (its own control plane, simulator,
Karpenter, operator, agents and pod runner; the session's cluster is not involved). It is the user journey
of record: the runtime image is built with ``sdworker image build`` and published with ``sdworker image
publish``, the example SDWorker follows the published family, raising its replicas makes Karpenter launch
the nodes, SD pods run the stand-in webui as real processes and are Ready only once it reports the model
loaded, and each is then asked through its port what a user would ask; then replicas go to 0 and
Karpenter's consolidation must leave no node, instance, disk or RuntimeDisk. It must exit 0, which it does
only if all of that held; print the cold-start timeline; and leave no process, mount, loop device or
directory of its own behind. Karpenter may launch one node more than needed
(kubernetes-sigs/karpenter#3121): node counts are lower bounds, replicas are exact. The scripted fallback
(``--autoscaler scripted``) still works and says what it is.
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


def run_demo(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sdworker_tools", "demo", "--ci", "--latency", "fast", *argv],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{out}\n{result.stderr[-3000:]}"
    return out


def test_bounded_demo_brings_every_replica_up_on_a_ready_runtime_and_cleans_up(tmp_path: Path) -> None:
    chart = tmp_path / "timeline.svg"
    out = run_demo("--nodes", "2", "--boot-seconds", "3", "--chart", str(chart))

    # Karpenter made the nodes (no scripted node), and the timeline table closes the scale-out.
    assert "Scale-out through Karpenter" in out
    assert "SCRIPTED" not in out
    assert re.search(r"\[karpenter\] v\S+ running .*startupTaints \['startup-taint\.", out), out
    assert "[scale-out] replicas 0 -> 2" in out
    registered = re.findall(r"\[scale-out\] Karpenter: node (gpu-\S+) registered with the startup taint", out)
    assert len(registered) >= 2, out
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
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in registered]
    assert {r[0] for r in rows} <= set(registered)
    assert sum(r[1] == "Ready" for r in rows) >= 2, rows
    summary = re.search(r"(\d+)/(\d+) Ready; node created -> runtime Ready", out)
    assert summary, out
    assert int(summary.group(1)) >= 2
    assert "[timing] node registered -> runtime Ready: max " in out
    # The image went through the real publisher, and the SD pods ran as real processes (the pod runner).
    assert "with sdworker image publish" in out
    assert "[pods] pod runner started" in out
    pod_rows = [line.split() for line in out.splitlines() if line.startswith("sd-webui-")]
    assert len(pod_rows) == 2, out
    assert all(row[1] in registered and row[4].startswith("+") for row in pod_rows), pod_rows
    checks = [line for line in out.splitlines() if line.startswith("[check] ")]
    placed = [line for line in checks if "runtime Ready" in line]
    served = [line for line in checks if " serves through " in line]
    assert len(placed) == 2, out
    # Through each pod's port: ready with the model, the API 401 without and 200 with credentials, the UI's
    # file= assets 200 (journey.check_serving; a problem would be listed instead).
    assert len(served) == 2, out
    assert all("/sdapi 401 without and 200 with credentials; UI file= assets 200" in line for line in served)
    assert "[demo] PASS: scale-out of 2 replicas (Karpenter)" in out
    svg = ET.parse(chart).getroot()
    labels = "".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert sum(f"{node} (Ready)" in labels for node in registered) >= 2, labels
    # The scale-in: Karpenter consolidated every node; nothing of the cloud or the API is left.
    assert "[scale-in] replicas 0: Karpenter consolidates the emptied nodes" in out
    assert any(
        line.startswith("[check] scale-in: ")
        and "no node, NodeClaim, instance, runtime disk or RuntimeDisk (so no finalizer) left" in line
        for line in checks
    ), out
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


def test_scripted_fallback_still_works_and_says_so(tmp_path: Path) -> None:
    out = run_demo("--autoscaler", "scripted", "--nodes", "1", "--chart", str(tmp_path / "timeline.svg"))
    assert "Scale-out is the SCRIPTED fallback" in out
    assert "[scale-out] SCRIPTED fallback (not an autoscaler): node 1/1 gpu-node-0" in out
    assert "[karpenter]" not in out
    assert "[demo] PASS: scale-out of 1 replicas (SCRIPTED fallback)" in out
    assert "[cleanup] done; nothing left behind" in out
