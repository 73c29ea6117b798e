"""The image contract: what a published sdworker runtime disk image carries, written and read in one place.

``sdworker image publish`` writes an image's labels and description with ``labels``/``description``; the
operator's resolver (``sdworker.cloud.gce``) reads the content digest back with ``read_digest``. Both sides
import this module, so the publisher and the resolver cannot drift apart.

GCE label values hold at most 63 characters of ``[a-z0-9_-]`` and a content digest has 64 hex digits, so:

- the description carries the full digest, as one ``; ``-separated field of a line that starts with
  ``sdworker runtime disk``: ``sdworker runtime disk; sdworker-digest=sha256:<64 hex>; files=...``;
- the ``sdworker-digest`` label carries the digest's first 63 hex digits, enough to find an image with
  ``--filter=labels.sdworker-digest=...`` but never read as the digest;
- reading needs both and refuses, with a message naming the field, a description without the digest, a digest
  that is not ``sha256:<64 hex>`` (a truncated one included), and a label that disagrees with the description.

Pure: no clients, no I/O; the digest grammar is ``sdworker_content.index``'s (the digest is the content
index's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sdworker_content.index import DIGEST_PREFIX, parse_digest

LABEL_DIGEST: Final = "sdworker-digest"
LABEL_BUILDER: Final = "sdworker-builder"
LABEL_MANAGED: Final = "sdworker-managed"
LABEL_VALUE_MAX: Final = 63
DESCRIPTION_HEAD: Final = "sdworker runtime disk"
FIELD_SEPARATOR: Final = "; "
FIELD_DIGEST: Final = "sdworker-digest"
_LABEL_UNSAFE: Final = re.compile(r"[^a-z0-9_-]")
_HEX_DIGITS: Final = re.compile(r"[0-9a-f]*")


class ImageMetaError(ValueError):
    """An image's labels or description do not hold an sdworker runtime disk's metadata."""


@dataclass(frozen=True)
class ImageMeta:
    """What the publisher records about a build on its image; ``digest`` is ``sha256:<64 hex>``."""

    digest: str
    builder: str = "sdworker-images"
    builder_version: str = "unknown"
    file_count: int | None = None
    total_bytes: int | None = None
    python: str | None = None  # "<interpreter path> <version>" the runtime's venv links to

    def __post_init__(self) -> None:
        _hex(self.digest, "digest")

    @classmethod
    def from_build_record(cls, record: Mapping[str, Any]) -> ImageMeta:
        """From a build record (``build.json``, written by ``sdworker image build``)."""
        builder = record.get("builder") or {}
        interpreter = record.get("interpreter") or {}
        python = " ".join(str(v) for v in (interpreter.get("path"), interpreter.get("version")) if v)
        return cls(
            digest=str(record.get("digest", "")),
            builder=str(builder.get("name") or "sdworker-images"),
            builder_version=str(builder.get("version") or "unknown"),
            file_count=_optional_int(record.get("fileCount")),
            total_bytes=_optional_int(record.get("totalBytes")),
            python=python or None,
        )

    def labels(self) -> dict[str, str]:
        """The image's labels: the digest's first 63 hex digits, the builder version, managed=true."""
        return {
            LABEL_DIGEST: digest_label(self.digest),
            LABEL_BUILDER: label_value(self.builder_version),
            LABEL_MANAGED: "true",
        }

    def description(self) -> str:
        """``sdworker runtime disk; sdworker-digest=sha256:<64 hex>; files=N; bytes=N; python=...; ...``."""
        fields = {
            FIELD_DIGEST: self.digest,
            "files": None if self.file_count is None else str(self.file_count),
            "bytes": None if self.total_bytes is None else str(self.total_bytes),
            "python": self.python,
            "builder": f"{self.builder} {self.builder_version}",
        }
        parts = [DESCRIPTION_HEAD]
        for key, value in fields.items():
            if value is None:
                continue
            if ";" in value or "\n" in value:
                raise ImageMetaError(
                    f"description field {key}={value!r}: ';' and line breaks are not allowed"
                )
            parts.append(f"{key}={value}")
        return FIELD_SEPARATOR.join(parts)


def label_value(text: str) -> str:
    """``text`` as a GCE label value: lower case, ``[a-z0-9_-]`` (anything else becomes ``-``), 63 at most."""
    return _LABEL_UNSAFE.sub("-", text.lower())[:LABEL_VALUE_MAX]


def digest_label(digest: str) -> str:
    """The ``sdworker-digest`` label for ``digest``: its first 63 hex digits (a label holds no more)."""
    return _hex(digest, "digest")[:LABEL_VALUE_MAX]


def description_fields(description: str) -> dict[str, str]:
    """The ``key=value`` fields of an sdworker image description; ImageMetaError if it is not one."""
    head, *parts = description.split(FIELD_SEPARATOR)
    if head.strip() != DESCRIPTION_HEAD:
        raise ImageMetaError(
            f"description {_short(description)} does not start with {DESCRIPTION_HEAD!r}: "
            "not published by `sdworker image publish`"
        )
    fields: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ImageMetaError(f"description field {part!r} is not key=value")
        if key in fields:
            raise ImageMetaError(f"description field {key} appears twice")
        fields[key] = value
    return fields


def read_digest(description: str, labels: Mapping[str, str]) -> str:
    """The full ``sha256:<64 hex>`` content digest an image carries, checked against its label.

    The description must hold ``sdworker-digest=sha256:<64 hex>`` and the ``sdworker-digest`` label must be
    its first 63 hex digits; anything else (a label-only image, a truncated digest, a mismatch) is an
    ImageMetaError naming the field, never a guess.
    """
    label = labels.get(LABEL_DIGEST)
    if not description.strip():
        hint = f" (the {LABEL_DIGEST} label holds only {LABEL_VALUE_MAX} hex digits)" if label else ""
        raise ImageMetaError(
            f"description is empty: it must carry {FIELD_DIGEST}={DIGEST_PREFIX}<64 hex>{hint}; "
            "publish the image with `sdworker image publish`"
        )
    fields = description_fields(description)
    if FIELD_DIGEST not in fields:
        raise ImageMetaError(f"description has no {FIELD_DIGEST}={DIGEST_PREFIX}<64 hex> field")
    digest = fields[FIELD_DIGEST]
    hex_part = _hex(digest, f"description field {FIELD_DIGEST}")
    if label is None:
        raise ImageMetaError(f"label {LABEL_DIGEST} is missing (it must be {hex_part[:LABEL_VALUE_MAX]})")
    if label != hex_part[:LABEL_VALUE_MAX]:
        raise ImageMetaError(
            f"label {LABEL_DIGEST}={label!r} does not match the description's {digest}: "
            "the image was changed after publishing"
        )
    return digest


def _hex(digest: str, what: str) -> str:
    try:
        return parse_digest(digest)
    except ValueError:
        hex_part = digest.removeprefix(DIGEST_PREFIX)
        if digest.startswith(DIGEST_PREFIX) and _HEX_DIGITS.fullmatch(hex_part):
            raise ImageMetaError(
                f"{what} {digest!r} has {len(hex_part)} hex digits, not 64: truncated?"
            ) from None
        raise ImageMetaError(f"{what} {digest!r} is not {DIGEST_PREFIX}<64 lower-case hex digits>") from None


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
