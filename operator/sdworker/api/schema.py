"""Check a raw object against its CRD's OpenAPI v3 schema, the way the API server does, naming each field.

The CRDs in ``crds/`` are the single source of truth for structure: types, required fields, bounds,
patterns, enums, list and map sizes and defaults. The operator cannot rely on the API server having
checked an object (the installed CRD may be older or newer than this code, objects may predate a rule), so
it checks again, from the same schema: the wheel carries a copy of each CRD's ``openAPIV3Schema`` as
package data (``schemas/*.json``, written from ``crds/`` by ``charts/sdworker/scripts/generate.py`` and
compared with it by a unit test), because ``crds/`` is outside the package and the operator runs from a
wheel. This module implements the subset of OpenAPI v3 those schemas use, with the API server's messages.

Like the API server, it prunes unknown fields, treats a null in a non-nullable property as absent, applies
defaults, and reports every error at once. Errors of the kinds the API server calls blocking (a wrong
type, a missing required field, an unsupported enum value, a string or list over its limit) stop the
cross-field rules (the CEL ``x-kubernetes-validations``, hand-written by the callers), as they stop CEL in
the API server (apiextensions-apiserver ``registry/customresource/strategy.go``, ``hasBlockingErr``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

Schema = Mapping[str, Any]
Formats = Mapping[str, Callable[[str], object]]

SCHEMA_DIR: Final = "schemas"


# metadata as the operator reads it (the CRD leaves metadata to the API server's own checks).
OBJECT_META: Final[Schema] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "uid": {"type": "string"},
        "generation": {"type": "integer"},
    },
}


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """One or more fields are invalid; ``errors`` lists each with its path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


@cache
def crd_schema(plural: str) -> Schema:
    """The ``openAPIV3Schema`` of the CRD ``<plural>.sdworker.dev``, from the package's generated copy."""
    text = resources.files(__package__).joinpath(SCHEMA_DIR, f"sdworker.dev_{plural}.json").read_text()
    schema: Schema = json.loads(text)["openAPIV3Schema"]
    return schema


@cache
def spec_schema(plural: str) -> Schema:
    """The schema of ``spec`` in the CRD ``<plural>.sdworker.dev``."""
    spec: Schema = crd_schema(plural)["properties"]["spec"]
    return spec


def object_schema(plural: str, **more: Schema) -> Schema:
    """A whole object of the CRD as the operator reads it: metadata and spec required, ``more`` optional."""
    return {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {"metadata": OBJECT_META, "spec": spec_schema(plural), **more},
    }


def json_type(value: object) -> str:
    """The JSON type name of a decoded value, as the API server names it in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True)
class Checked:
    """The object pruned, defaulted and normalised (integral floats become ints), and what was wrong."""

    value: Any
    errors: tuple[FieldError, ...]
    blocking: bool
    """Whether an error is of a kind that stops the cross-field (CEL) rules."""


class _Run:
    def __init__(self, formats: Formats) -> None:
        self.errors: list[FieldError] = []
        self.blocking = False
        self.formats = formats

    def fail(self, path: str, message: str, *, blocking: bool = False) -> None:
        self.errors.append(FieldError(path, message))
        self.blocking = self.blocking or blocking

    def value(self, schema: Schema, value: Any, path: str) -> Any:
        if value is None and schema.get("nullable"):
            return None
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, str):
                return self.string(schema, value, path)
            if not _is_type(value, "integer"):
                self.fail(path, f'must be of type integer or string: "{json_type(value)}"', blocking=True)
                return None
            return int(value)
        expected = schema.get("type")
        if expected is None:
            return value
        if not _is_type(value, expected):
            self.fail(path, f'must be of type {expected}: "{json_type(value)}"', blocking=True)
            return None
        if expected == "object":
            return self.mapping(schema, value, path)
        if expected == "array":
            return self.array(schema, value, path)
        if expected == "string":
            return self.string(schema, value, path)
        if expected == "integer":
            return self.number(schema, int(value), path)
        if expected == "number":
            return self.number(schema, value, path)
        return value

    def mapping(self, schema: Schema, value: Mapping[str, Any], path: str) -> dict[str, Any]:
        properties: Mapping[str, Schema] = schema.get("properties", {})
        extra: Schema | None = schema.get("additionalProperties")
        if not properties and not isinstance(extra, Mapping):
            return dict(value)  # a free-form object such as metadata: kept as it is
        for key in schema.get("required", ()):
            if value.get(key) is None:
                self.fail(child(path, key), "Required value", blocking=True)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self.fail(path, f"should have at least {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.fail(path, f"should have at most {schema['maxProperties']} properties", blocking=True)
        result: dict[str, Any] = {}
        for key, sub in properties.items():
            raw = value.get(key)
            if raw is None and "default" in sub:
                raw = copy.deepcopy(sub["default"])  # defaulted in turn below, as the API server does
            if raw is not None or (key in value and sub.get("nullable")):
                result[key] = self.value(sub, raw, child(path, key))
        if isinstance(extra, Mapping):
            for key in sorted(k for k in value if k not in properties):
                result[key] = self.value(extra, value[key], f"{path}[{key}]")
        return result

    def array(self, schema: Schema, value: Sequence[Any], path: str) -> list[Any]:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.fail(
                path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items", blocking=True
            )
            return []
        items: Schema = schema.get("items", {})
        result = [self.value(items, item, f"{path}[{i}]") for i, item in enumerate(value)]
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    self.fail(f"{path}[{i}]", f"Duplicate value: {quote(item)}")
                seen.append(item)
        return result

    def string(self, schema: Schema, value: str, path: str) -> str:
        limit = schema.get("maxLength")
        if limit is not None and len(value.encode("utf-8", "surrogatepass")) > limit:
            self.fail(path, f"Too long: may not be more than {limit} bytes", blocking=True)
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            self.fail(path, f"should match '{schema['pattern']}'")
        self.enum(schema, value, path)
        if (parse := self.formats.get(schema.get("format", ""))) is not None:
            try:
                parse(value)
            except ValueError:
                self.fail(path, f"must be of type {schema['format']}: {quote(value)}", blocking=True)
        return value

    def number(self, schema: Schema, value: float, path: str) -> float:
        if "minimum" in schema and value < schema["minimum"]:
            self.fail(path, f"should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            self.fail(path, f"should be less than or equal to {schema['maximum']}")
        self.enum(schema, value, path)
        return value

    def enum(self, schema: Schema, value: object, path: str) -> None:
        allowed = schema.get("enum")
        if allowed is not None and value not in allowed:
            supported = ", ".join(quote(a) for a in allowed)
            self.fail(
                path, f"Unsupported value: {quote(value)}: supported values: {supported}", blocking=True
            )


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    """A CRD pattern with Go's meaning: ``$`` is the end of the text (in Python it also matches before a
    final newline, which would let ``"name\\n"`` through)."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _is_type(value: object, expected: str) -> bool:
    actual = json_type(value)
    if actual == expected or (expected == "number" and actual == "integer"):
        return True
    # JSON has one number type; the API server takes 3.0 for an integer, and so does the operator.
    return expected == "integer" and isinstance(value, float) and value.is_integer()


def check(schema: Schema, value: Any, path: str = "", *, formats: Formats | None = None) -> Checked:
    """Check ``value`` against ``schema``; ``formats`` maps a string ``format`` to a parser (ValueError)."""
    run = _Run(formats or {})
    result = run.value(schema, value, path)
    return Checked(result, tuple(run.errors), run.blocking)


def validate(
    schema: Schema,
    value: Any,
    rules: Callable[[Any], Sequence[FieldError]],
    path: str = "",
    *,
    formats: Formats | None = None,
) -> Any:
    """The checked, defaulted value, or SpecError listing every error: the schema's, then ``rules``'.

    ``rules`` (the CEL rules and semantic checks, given the defaulted value) run only when the schema
    found nothing blocking, so they may rely on every type and required field, as CEL rules do.
    """
    checked = check(schema, value, path, formats=formats)
    errors = [*checked.errors, *(() if checked.blocking else rules(checked.value))]
    if errors:
        raise SpecError(errors)
    return checked.value
