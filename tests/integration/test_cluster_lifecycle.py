"""The launcher leaves nothing behind: not on stop(), not on Ctrl-C, not when its parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sdworker_tools.cluster import LocalCluster, sweep_stale_workdirs
from sdworker_tools.wait import wait_for


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; only its parent can reap it.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    """All descendants of ``pid`` (control-plane processes run in their own process groups)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
                frontier.append(int(entry.name))
    return found


def test_stop_leaves_no_process_or_file(cluster: LocalCluster) -> None:
    second = LocalCluster(binaries=cluster.binaries, log=lambda _: None)
    second.start()
    pids = [p.pid for p in second.processes()]
    workdir = second.workdir
    assert workdir is not None
    assert workdir.is_dir()
    assert len(pids) == 5
    assert all(pid_alive(p) for p in pids)
    second.stop()
    assert not any(pid_alive(p) for p in pids)
    assert not workdir.exists()


def _start_cli(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdworker_tools", "cluster", "up", "--gpu-nodes", "1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("export KUBECONFIG="):
            return proc, line.split("=", 1)[1].split()[0]
    raise AssertionError("cluster up ended before it was ready:\n" + "".join(lines))


def test_cli_ctrl_c_stops_everything() -> None:
    proc, kubeconfig = _start_cli([])
    workdir = Path(kubeconfig).parent
    children = children_of(proc.pid)
    assert len(children) == 5
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "nothing left behind" in out
    assert not any(pid_alive(p) for p in children)
    assert not workdir.exists()


def test_killed_launcher_takes_its_children_with_it() -> None:
    proc, kubeconfig = _start_cli([])
    workdir = Path(kubeconfig).parent
    children = children_of(proc.pid)
    assert len(children) == 5
    proc.kill()  # SIGKILL: no Python cleanup runs; PR_SET_PDEATHSIG must do the work
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    wait_for(
        lambda: not any(pid_alive(p) for p in children),
        timeout=20,
        what="the control-plane processes to die with their parent",
        describe=lambda: [p for p in children if pid_alive(p)],
    )
    # Files cannot clean themselves up after a SIGKILL; the next launcher sweeps them.
    assert workdir.exists()
    assert workdir in sweep_stale_workdirs()
    assert not workdir.exists()
