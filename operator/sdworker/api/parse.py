"""The parsing API in one import: raw SDWorker, RuntimeDisk and status dicts in, typed objects out.

The work is split by resource (``sdworker_parsing``, ``runtimedisk_parsing``, ``status_parsing``) over one
schema checker (``schema``) and the hand-written rules (``rules``); callers import from here.
"""

from __future__ import annotations

from sdworker.api.rules import flag_matches, label_key_problem, prefetch_problem
from sdworker.api.runtimedisk_parsing import parse_runtimedisk, parse_runtimedisk_spec
from sdworker.api.schema import FieldError, SpecError
from sdworker.api.sdworker_parsing import parse_sdworker, parse_sdworker_spec
from sdworker.api.status_parsing import (
    parse_conditions,
    parse_rollout_status,
    parse_runtime_status,
    parse_time,
)

__all__ = [
    "FieldError",
    "SpecError",
    "flag_matches",
    "label_key_problem",
    "parse_conditions",
    "parse_rollout_status",
    "parse_runtime_status",
    "parse_runtimedisk",
    "parse_runtimedisk_spec",
    "parse_sdworker",
    "parse_sdworker_spec",
    "parse_time",
    "prefetch_problem",
]
