"""``sdworker_images.proc``: the builder's only way to run a command, and how its failures read."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from sdworker_images import proc
from sdworker_images.errors import BuildError


def test_output_and_status_are_captured() -> None:
    result = proc.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")


def test_environment_is_added_to_not_replaced() -> None:
    result = proc.run(
        [sys.executable, "-c", "import os; print(os.environ['SDW_TEST'], 'PATH' in os.environ)"],
        env={"SDW_TEST": "x"},
    )
    assert result.stdout == "x True\n"


def test_a_failure_raises_with_the_stderr_tail() -> None:
    code = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(50)]; sys.exit(3)"
    with pytest.raises(proc.CommandError) as caught:
        proc.run([sys.executable, "-c", code])
    message = str(caught.value)
    assert "exited with status 3" in message
    assert "line 49" in message
    assert "line 10" not in message
    assert caught.value.result is not None
    assert caught.value.result.returncode == 3
    assert isinstance(caught.value, BuildError)


def test_check_false_returns_the_failure() -> None:
    assert proc.run([sys.executable, "-c", "raise SystemExit(2)"], check=False).returncode == 2


def test_a_missing_program_is_a_build_error() -> None:
    with pytest.raises(proc.CommandError, match="cannot start"):
        proc.run(["/nonexistent/sdworker-tool"])
    with pytest.raises(BuildError, match="sdworker-no-such-tool not found: install some-package"):
        proc.require("sdworker-no-such-tool", "some-package")


def test_long_commands_send_heartbeats_and_time_out() -> None:
    beats: list[float] = []
    proc.run(
        [sys.executable, "-c", "import time; time.sleep(0.35)"], heartbeat=beats.append, heartbeat_seconds=0.1
    )
    assert beats
    assert all(b > 0 for b in beats)
    with pytest.raises(proc.CommandError, match="still running after"):
        proc.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2, heartbeat_seconds=0.05)


PACKAGE = Path(__file__).resolve().parents[2] / "images" / "sdworker_images"
MODULES = sorted(PACKAGE.glob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_only_proc_starts_processes_and_nothing_imports_the_test_tools(path: Path) -> None:
    imports = _imports(path)
    assert not any(name.split(".")[0] == "sdworker_tools" for name in imports), (
        f"{path.name} imports test tools"
    )
    if path.name != "proc.py":
        assert "subprocess" not in imports, f"{path.name}: run commands through sdworker_images.proc"
        assert "os.system" not in path.read_text()
        assert "os.popen" not in path.read_text()


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_every_module_says_why_it_exists(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.name} has no module docstring"
    assert len(docstring.split()) >= 12
