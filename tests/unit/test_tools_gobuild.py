"""``tools/lib/gobuild.sh``, sourced by the three Go-tool build scripts: the cache, the lock, the install.

Run with the real go command on a one-file module of our own (no dependencies, nothing fetched), by a
script that calls the library's functions in the order ``tools/helm/build.sh`` does. It checks what the
real scripts rely on: the path is the last line of stdout; a second run is a cache hit; the key covers the
inputs; a failed build leaves nothing behind; a second caller waits for a running build instead of
repeating it. The real scripts' cache hits are exercised by every fixture that finds the control plane.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sdworker_tools import procs
from sdworker_tools.wait import wait_for

LIB = Path(__file__).resolve().parents[2] / "tools" / "lib" / "gobuild.sh"
# HOLD (set for one run only) parks the build, lock held, until the test writes to the FIFO $HOLD.
SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "{lib}"
gobuild_setup hello v1 "$here/go.mod" "$here/main.go" "$here/build.sh"
gobuild_exit_if_cached "$GOBUILD_OUT/hello" hello
gobuild_start local "$GOBUILD_OUT/hello" hello
gobuild_log "building hello into $GOBUILD_OUT"
( cd "$here"
  total=$(gobuild_modules .)
  if [[ -n "${{HOLD:-}}" ]]; then touch "$HOLD.started"; read -r _ < "$HOLD"; fi
  gobuild_go "" "$total" build -v -o "$GOBUILD_TMP/hello" .
)
gobuild_install "$GOBUILD_OUT/hello"
"""
MAIN = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from %s") }\n'


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    """A Go tool's folder (go.mod, main.go, build.sh) like tools/helm/, with its own cache."""
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "go.mod").write_text("module example.com/hello\n\ngo 1.26\n")
    (folder / "main.go").write_text(MAIN % "v1")
    script = folder / "build.sh"
    script.write_text(SCRIPT.format(lib=LIB))
    script.chmod(0o755)
    return folder


def _env(tool: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SDWORKER_CACHE": str(tool.parent / "cache"), **extra}


def _build(tool: Path) -> tuple[str, str]:
    """Run the build script; its stdout's last line (the path) and its stderr."""
    result = procs.run([str(tool / "build.sh")], env=_env(tool), timeout=300)
    return result.stdout.splitlines()[-1], result.stderr


def _leftovers(tool: Path) -> list[str]:
    return sorted(p.name for p in (tool.parent / "cache" / "hello").glob("*.tmp.*"))


def test_a_build_prints_its_path_and_a_second_run_is_a_cache_hit(tool: Path) -> None:
    path, log = _build(tool)
    assert re.fullmatch(rf"{tool.parent}/cache/hello/v1-[0-9a-f]{{16}}/hello", path), path
    assert "building hello" in log
    assert procs.run([path]).stdout == "hello from v1\n"
    again, log = _build(tool)
    assert again == path
    assert log == f"[hello] cached: {path}\n"
    assert _leftovers(tool) == []


def test_the_cache_key_covers_the_inputs(tool: Path) -> None:
    first, _ = _build(tool)
    (tool / "main.go").write_text(MAIN % "v2")
    second, log = _build(tool)
    assert second != first
    assert "building hello" in log
    assert procs.run([second]).stdout == "hello from v2\n"
    assert procs.run([first]).stdout == "hello from v1\n"  # the old build is untouched


def test_a_failed_build_leaves_nothing_behind(tool: Path) -> None:
    (tool / "main.go").write_text("package main\n\nfunc main() { nope }\n")
    result = procs.run([str(tool / "build.sh")], env=_env(tool), timeout=300, check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "undefined: nope" in result.stderr
    left = [p.name for p in (tool.parent / "cache" / "hello").iterdir() if not p.name.endswith(".lock")]
    assert left == []


def _start(tool: Path, name: str, **env: str) -> procs.Process:
    return procs.Process(name, [str(tool / "build.sh")], tool.parent / f"{name}.log", _env(tool, **env))


def _finish(process: procs.Process) -> str:
    """Wait for ``process`` to exit 0; its whole log."""
    wait_for(lambda: not process.alive(), timeout=300, what=f"the {process.name} build to finish")
    assert process.popen.returncode == 0, process.log_tail()
    return process.log_path.read_text()


def test_a_second_caller_waits_for_the_running_build_instead_of_repeating_it(tool: Path) -> None:
    gate = tool.parent / "gate"
    os.mkfifo(gate)
    first = _start(tool, "first", HOLD=str(gate))
    try:
        wait_for(lambda: Path(f"{gate}.started").exists(), timeout=120, what="the first build to start")
        second = _start(tool, "second")
        try:
            wait_for(
                lambda: "is running; waiting for it" in second.log_tail(),
                timeout=60,
                what="the second caller to wait on the lock",
                describe=second.log_tail,
            )
            with gate.open("w") as release:
                release.write("go\n")
            first_log, second_log = _finish(first), _finish(second)
        finally:
            second.stop()
    finally:
        first.stop()
    path = first_log.splitlines()[-1]
    assert "building hello" in first_log
    assert "building hello" not in second_log
    assert second_log.splitlines()[-2:] == [f"[hello] cached: {path}", path]
    assert procs.run([path]).stdout == "hello from v1\n"
    assert _leftovers(tool) == []
