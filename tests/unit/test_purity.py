"""``sdworker.api`` and ``sdworker.domain`` stay pure: standard library only, no I/O, a docstring each.

The node agent imports ``sdworker.api`` and every decision in ``sdworker.domain`` is tested as a table; both
depend on these modules importing nothing that talks to a cluster, a cloud, a process or the network.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "sdworker"
# Standard-library modules that perform I/O or concurrency; decisions must be handed their inputs instead.
IMPURE_STDLIB = {"asyncio", "http", "os", "shutil", "socket", "ssl", "subprocess", "threading", "urllib"}
ALLOWED_OWN = {"api": ("sdworker.api",), "domain": ("sdworker.api", "sdworker.domain")}
MODULES = sorted((layer, path) for layer in ALLOWED_OWN for path in (PACKAGE / layer).glob("*.py"))


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.append(node.module or "")
    return names


@pytest.mark.parametrize(("layer", "path"), MODULES, ids=[f"{layer}/{p.name}" for layer, p in MODULES])
def test_module_imports_only_the_standard_library_and_lower_layers(layer: str, path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "sdworker":
            assert name.startswith(ALLOWED_OWN[layer]), f"{layer}/{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"
            assert top not in IMPURE_STDLIB, f"{path.name} imports {name}"


@pytest.mark.parametrize(("layer", "path"), MODULES, ids=[f"{layer}/{p.name}" for layer, p in MODULES])
def test_module_says_why_it_exists(layer: str, path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{layer}/{path.name} has no module docstring"
    assert len(docstring.split()) >= 12
