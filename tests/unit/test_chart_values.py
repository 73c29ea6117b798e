"""values.yaml and values.schema.json agree, key by key, and the schema refuses what it does not know.

helm validates values against the schema (tests/integration/test_chart_helm.py proves the refusals with the
real CLI); these pure checks keep the two files in step: every object in the schema closes itself with
``additionalProperties: false`` (or types its free-form map values), every key in values.yaml is in the
schema and has a comment, and every ci/*-values.yaml key exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "sdworker"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
# Kubernetes pass-through objects (affinity, tolerations items) and helm's own `global` stay open.
OPEN = {"affinity", "global", "tolerations[]", "extraTolerations[]"}


def _objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if node.get("type") == "object":
        yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _objects(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")


def test_every_schema_object_rejects_unknown_keys() -> None:
    loose = [
        path
        for path, node in _objects(SCHEMA)
        if path.split(".")[-1] not in OPEN and node.get("additionalProperties", True) is True
    ]
    assert loose == []


def _keys(values: dict[str, Any], schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, bool]]:
    """(path, known) for every key of ``values`` down to where the schema stops naming properties."""
    props = schema.get("properties")
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        known = props is not None and key in props
        yield here, known if props is not None else True
        if known and isinstance(value, dict) and props is not None:
            yield from _keys(value, props[key], here)


def test_values_yaml_and_schema_name_the_same_keys() -> None:
    assert [p for p, known in _keys(VALUES, SCHEMA) if not known] == []
    top = set(SCHEMA["properties"]) - {"global"}
    assert top == set(VALUES)


@pytest.mark.parametrize("path", sorted((CHART / "ci").glob("*-values.yaml")), ids=lambda p: p.name)
def test_ci_values_use_only_known_keys(path: Path) -> None:
    values = yaml.safe_load(path.read_text()) or {}
    assert [p for p, known in _keys(values, SCHEMA) if not known] == []


def test_every_values_key_is_commented() -> None:
    """Each leaf key has a comment right above it, or sits inside a value whose key has one (resources)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, commented) of the keys enclosing the current line
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = i > 0 and lines[i - 1].strip().startswith("#")
        key, _, rest = stripped.partition(":")
        if rest.strip() and not commented and not any(c for _, c in stack):
            missing.append(f"line {i + 1}: {key}")
        stack.append((indent, commented))
    assert missing == []
