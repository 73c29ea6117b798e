"""Reading a YAML document field by field, collecting every problem with its dotted path.

``spec`` reads ``runtime.yaml`` through it, so that one load reports all problems at once, each as
``models[0].sha256: required``, and a field nobody read is reported as unknown.
"""

from __future__ import annotations

import re
from typing import Any


class Fields:
    """A mapping being read, with the dotted path to it, appending problems to a shared list."""

    def __init__(self, data: object, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        self.valid = isinstance(data, dict)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.read: set[str] = set()
        if not self.valid:
            what = where or "the document"
            self.errors.append(f"{what}: expected a mapping, got {type_name(data)}")

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self._path(key)}: {message}")

    def _get(self, key: str, required: bool) -> object:
        self.read.add(key)
        value = self.data.get(key)
        if value is None and required and self.valid:
            self.error(key, "required")
        return value

    def string(
        self,
        key: str,
        *,
        required: bool = True,
        pattern: re.Pattern[str] | None = None,
        max_len: int | None = None,
        hint: str = "",
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.error(key, f"expected a non-empty string, got {type_name(value)}")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(key, f"{value!r} is not valid" + (f" ({hint})" if hint else ""))
            return None
        if max_len is not None and len(value) > max_len:
            self.error(key, f"{value!r} is longer than {max_len} characters")
            return None
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self._get(key, required=False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {type_name(value)}")
            return default
        return value

    def integer(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self._get(key, required=False)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            self.error(key, f"expected an integer from {minimum} to {maximum}, got {value!r}")
            return None
        return value

    def string_list(self, key: str) -> list[str]:
        value = self._get(key, required=False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(key, "expected a list of non-empty strings")
            return []
        return list(value)

    def mapping(self, key: str, *, required: bool = True) -> Fields | None:
        value = self._get(key, required)
        if value is None:
            return None
        fields = Fields(value, self._path(key), self.errors)
        return fields if fields.valid else None

    def items(self, key: str) -> list[Fields]:
        value = self._get(key, required=False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"expected a list, got {type_name(value)}")
            return []
        return [Fields(item, f"{self._path(key)}[{i}]", self.errors) for i, item in enumerate(value)]

    def reject_unknown(self) -> None:
        for key in self.data:
            if key not in self.read:
                self.error(str(key), "unknown field")


def type_name(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
