"""The simulator's knobs: what is fixed at start and what a test may change while it runs.

``SimConfig`` is what ``ComputeSim`` and the CLI take. The run-time knobs (latency, quotas,
pending-operation limit, fault rates, wait deadline) can be changed later through
``ComputeSim.configure`` or ``POST /_sim/config`` with the same field names; ``FaultRule`` scripts
a failure for the next N matching calls, deterministically, where a rate would be a coin toss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker_tools.computesim.errors import OPERATION_ERRORS
from sdworker_tools.computesim.latency import METHODS, PROFILES

DEFAULT_ZONES = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-c",
    "us-central1-f",
    "us-east1-b",
    "us-east1-c",
    "europe-west4-a",
    "europe-west4-b",
)

# Fields a running simulator accepts in configure(); the others are fixed at start.
RUNTIME_FIELDS = (
    "latency",
    "latency_overrides",
    "seed",
    "write_quota_per_s",
    "write_quota_burst",
    "read_quota_per_s",
    "pending_ops_per_resource",
    "http_error_rate",
    "lost_response_rate",
    "operation_error_rate",
    "operation_error_codes",
    "operation_wait_timeout_s",
)


@dataclass
class SimConfig:
    """Everything about a simulator run. Defaults: fast latency, the real quota defaults."""

    state_dir: Path | None = None  # None: a fresh temporary directory, removed on stop
    dev_base: Path | None = None  # instance dev roots: <dev_base>/<instance>/dev; None: <state_dir>/nodes
    host: str = "127.0.0.1"
    port: int = 0
    zones: tuple[str, ...] = DEFAULT_ZONES
    block_devices: bool = True  # False: API only (no files, no loop devices), for scale tests
    link_base: str | None = None  # self-link prefix; None: the simulator's own .../compute/v1/
    gcs_root: Path | None = None  # gs://BUCKET/OBJ in images.insert -> <gcs_root>/BUCKET/OBJ
    latency: str = "fast"
    latency_overrides: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    # GCE's regional write quota (research/peers.md §8: ~20 requests/s); None switches it off.
    write_quota_per_s: float | None = 20.0
    write_quota_burst: float | None = None  # None: one second's worth
    read_quota_per_s: float | None = None
    # GCE queues at most 32 operations per VM (PD CSI PR #847), then answers 403 "Too many pending
    # operations on a resource.".
    pending_ops_per_resource: int = 32
    http_error_rate: float = 0.0  # any API call answers 500/503 without acting
    lost_response_rate: float = 0.0  # a mutation acts, but its answer is a 503 (retry with requestId!)
    operation_error_rate: float = 0.0  # an operation ends DONE with an error
    operation_error_codes: tuple[str, ...] = ("RESOURCE_NOT_READY", "ZONE_RESOURCE_POOL_EXHAUSTED")
    operation_wait_timeout_s: float = 120.0  # operations.wait returns after this even if not DONE

    def __post_init__(self) -> None:
        validate(self)

    def runtime_view(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in RUNTIME_FIELDS}

    def updated(self, changes: Mapping[str, Any]) -> SimConfig:
        unknown = set(changes) - set(RUNTIME_FIELDS)
        if unknown:
            raise ValueError(f"not run-time settable (or unknown): {sorted(unknown)}")
        normalized = dict(changes)
        if "operation_error_codes" in normalized:
            normalized["operation_error_codes"] = tuple(normalized["operation_error_codes"])
        if "latency_overrides" in normalized:
            normalized["latency_overrides"] = {
                **self.latency_overrides,
                **{k: float(v) for k, v in normalized["latency_overrides"].items()},
            }
        return dataclasses.replace(self, **normalized)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def validate(config: SimConfig) -> None:
    if config.latency not in PROFILES:
        raise ValueError(f"unknown latency profile {config.latency!r} (known: {', '.join(PROFILES)})")
    unknown = set(config.latency_overrides) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods in latency_overrides: {sorted(unknown)}")
    for name in ("http_error_rate", "lost_response_rate", "operation_error_rate"):
        rate = getattr(config, name)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate}")
    bad_codes = set(config.operation_error_codes) - set(OPERATION_ERRORS)
    if bad_codes:
        raise ValueError(
            f"unknown operation error codes {sorted(bad_codes)} (known: {sorted(OPERATION_ERRORS)})"
        )
    if config.pending_ops_per_resource < 1:
        raise ValueError("pending_ops_per_resource must be >= 1")
    for name in ("write_quota_per_s", "read_quota_per_s"):
        rate = getattr(config, name)
        if rate is not None and rate <= 0:
            raise ValueError(f"{name} must be > 0 or None")
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the simulator binds loopback only")


FAULT_KINDS = ("http", "operation", "lost_response", "permission")


@dataclass
class FaultRule:
    """Fail the next ``count`` calls of ``method`` (``*`` or ``instances.*`` patterns) whose path
    contains ``target``.

    ``http``: answer ``http_status`` (500/503) without acting. ``operation``: accept, then end the
    operation DONE with ``code``. ``lost_response``: act, then answer 503, as a connection dropped
    after the server committed. ``permission``: answer 403 ``forbidden`` naming the IAM permission the
    method needs (``iam``), as for a service account without it. ``count=-1``: every time.
    """

    method: str
    kind: str = "http"
    http_status: int = 503
    code: str = "RESOURCE_NOT_READY"
    count: int = 1
    target: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.kind == "operation" and self.code not in OPERATION_ERRORS:
            raise ValueError(f"unknown operation error code {self.code!r}")
        if self.kind == "http" and self.http_status not in (500, 502, 503, 504):
            raise ValueError("http faults are 5xx")

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0:
            return False
        if self.method not in ("*", method) and not (
            self.method.endswith(".*") and method.startswith(self.method[:-1])
        ):
            return False
        return self.target in path

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
