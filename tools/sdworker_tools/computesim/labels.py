"""Label validation and ``labelFingerprint``, the optimistic-concurrency token of ``setLabels``.

GCE returns a fingerprint with every labelled resource and ``setLabels`` must echo it: a stale
one is refused with 412 ``conditionNotMet``. The warm pool relies on exactly that to let two
operator replicas race for a disk safely, so the simulator computes a fingerprint that changes
whenever the labels change (and is the real API's well-known value for no labels).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping

from sdworker_tools.computesim import errors

# The fingerprint GCE reports for a resource without labels.
EMPTY_FINGERPRINT = "42WmSpB8rSM="
MAX_LABELS = 64
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_KEY_RULE = (
    "Label keys must start with a lowercase letter and contain only "
    "lowercase letters, digits, '_' and '-' (at most 63 characters)."
)
_VALUE_RULE = "Label values may contain only lowercase letters, digits, '_' and '-' (at most 63 characters)."


def fingerprint(labels: Mapping[str, str]) -> str:
    if not labels:
        return EMPTY_FINGERPRINT
    canonical = json.dumps(dict(sorted(labels.items())), separators=(",", ":")).encode()
    return base64.b64encode(hashlib.sha256(canonical).digest()[:8]).decode()


def validate(labels: object, field_name: str = "labels") -> dict[str, str]:
    """The labels as a plain dict, or a 400 naming the offending key or value."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise errors.invalid_field(field_name, labels, "Labels must be a map of strings.")
    if len(labels) > MAX_LABELS:
        raise errors.invalid(f"Invalid value for field '{field_name}': too many labels (max {MAX_LABELS}).")
    return {
        _match(key, _KEY, field_name, _KEY_RULE): _match(value, _VALUE, f"{field_name}.{key}", _VALUE_RULE)
        for key, value in labels.items()
    }


def _match(text: object, pattern: re.Pattern[str], field_name: str, rule: str) -> str:
    if not isinstance(text, str) or pattern.fullmatch(text) is None:
        raise errors.invalid_field(field_name, text, rule)
    return text


def check_fingerprint(current: Mapping[str, str], given: object) -> None:
    """412 unless ``given`` is the fingerprint of ``current`` (a missing one is a 400, as in GCE)."""
    if given is None or given == "":
        raise errors.required("labelFingerprint")
    if given != fingerprint(current):
        raise errors.fingerprint_mismatch()
