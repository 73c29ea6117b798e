"""Every module of ``sdworker.api`` and ``sdworker.domain`` says why it exists.

What these modules may import is enforced by import-linter (``make lint``, contracts in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "sdworker"
MODULES = sorted((layer, path) for layer in ("api", "domain") for path in (PACKAGE / layer).glob("*.py"))


@pytest.mark.parametrize(("layer", "path"), MODULES, ids=[f"{layer}/{p.name}" for layer, p in MODULES])
def test_module_says_why_it_exists(layer: str, path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{layer}/{path.name} has no module docstring"
    assert len(docstring.split()) >= 12
