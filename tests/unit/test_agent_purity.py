"""The agent's boundaries hold: decisions stay pure, one module runs programs, no cloud code is reachable.

The agent runs privileged on every GPU node, so what it can do is kept small and visible: it may import
``sdworker.api``, ``sdworker.kube`` and ``sdworker.manifest`` from the operator package and nothing else
(certainly not ``sdworker.cloud``), and ``subprocess`` appears in one module only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "daemonset" / "sdworker_agent"
MODULES = sorted(PACKAGE.glob("*.py"))
PURE = ("mountinfo.py", "plan.py")
ALLOWED_OPERATOR_MODULES = ("sdworker.api", "sdworker.kube", "sdworker.manifest")
IMPURE_STDLIB = {"asyncio", "http", "os", "shutil", "socket", "ssl", "subprocess", "threading", "urllib"}


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.append(node.module or "")
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_only_the_shared_operator_modules_are_imported(path: Path) -> None:
    for name in imported_modules(path):
        if name == "sdworker" or name.startswith("sdworker."):
            assert name == "sdworker" or name.startswith(ALLOWED_OPERATOR_MODULES), (
                f"{path.name} imports {name}"
            )
        assert not name.startswith("sdworker.cloud"), f"{path.name} imports {name}"
        assert not name.startswith("google"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_only_system_runs_programs(path: Path) -> None:
    if path.name != "system.py":
        assert "subprocess" not in imported_modules(path), path.name


@pytest.mark.parametrize("name", PURE)
def test_decision_modules_are_pure(name: str) -> None:
    for imported in imported_modules(PACKAGE / name):
        top = imported.split(".")[0]
        if top in ("sdworker", "sdworker_agent"):
            assert imported.startswith(("sdworker.api", "sdworker_agent.mountinfo", "sdworker_agent.plan"))
        else:
            assert top in sys.stdlib_module_names or top == "__future__", f"{name} imports {imported}"
            assert top not in IMPURE_STDLIB, f"{name} imports {imported}"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_says_why_it_exists(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.name} has no module docstring"
    assert len(docstring.split()) >= 12
