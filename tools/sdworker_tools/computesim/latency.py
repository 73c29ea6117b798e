"""How long the simulated API takes: named latency profiles, per method, with jitter.

An operation sits PENDING while it waits behind earlier operations on the same instance (GCE
serialises a VM's attach/detach queue) plus ``pending_s``, then RUNNING for its method's
latency, then DONE. ``call_*_s`` is the synchronous cost of the HTTP call itself.

Profiles:

``realistic`` (defaults from research/peers.md §8 and the issues it cites)
    ``disks.insert`` from an image 6 s (±30 %: the brief's 5-10 s band for a zone-warm image);
    the first disk of an image in a zone also copies the image into the zone, O(size)
    (golang/go#9992, GKE secondary-boot-disk docs): +20 s + 2 s/GiB of image;
    ``instances.attachDisk`` 3 s (±35 %: ~3 s via gcloud in gitpod#9054, "usually < 1 s" for the
    bare API op in PD CSI #956, so a 2-4 s band); ``detachDisk`` 3 s; ``disks.delete`` 4 s;
    ``setLabels`` 1 s; ``instances.insert`` 10 s; ``instances.delete`` 20 s;
    ``images.insert`` 60 s + 5 s/GiB; a call costs 0.15 s (write) / 0.05 s (read).
``fast`` (tests): every operation 10-50 ms, first-in-zone +150 ms (still measurable), calls free.
``instant``: everything 0 (pure-logic tests; operations are DONE by the time ``wait`` is called).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


def _resource(resource: str, **seconds: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return {f"{resource}.{verb}": pair for verb, pair in seconds.items()}


# Seconds RUNNING per mutating method, (realistic, fast), by resource.
_RUNNING_S: dict[str, tuple[float, float]] = {
    **_resource("disks", insert=(6.0, 0.04), delete=(4.0, 0.02), setLabels=(1.0, 0.01)),
    **_resource(
        "images", insert=(60.0, 0.05), delete=(5.0, 0.01), deprecate=(1.0, 0.01), setLabels=(1.0, 0.01)
    ),
    **_resource("instances", insert=(10.0, 0.02), delete=(20.0, 0.03), setLabels=(1.0, 0.01)),
    **_resource("instances", attachDisk=(3.0, 0.03), detachDisk=(3.0, 0.03), setDiskAutoDelete=(1.0, 0.01)),
}
METHODS = tuple(_RUNNING_S)


@dataclass(frozen=True)
class LatencyProfile:
    name: str
    operations: Mapping[str, float]  # seconds RUNNING, per method
    default_s: float = 1.0  # a method not listed
    jitter: float = 0.0  # +-fraction, uniform
    pending_s: float = 0.0
    first_in_zone_s: float = 0.0  # extra for the first disk of an image in a zone...
    first_in_zone_per_gib_s: float = 0.0  # ...plus this per GiB of image
    image_per_gib_s: float = 0.0  # images.insert, per GiB of raw disk
    call_read_s: float = 0.0
    call_write_s: float = 0.0
    overrides: Mapping[str, float] = field(default_factory=dict)

    def base(self, method: str) -> float:
        if method in self.overrides:
            return self.overrides[method]
        return self.operations.get(method, self.default_s)

    def sample(self, method: str, rng: random.Random, *, extra_s: float = 0.0) -> float:
        base = self.base(method) + extra_s
        if self.jitter and base > 0:
            base *= rng.uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, base)

    def first_in_zone_extra(self, image_gib: float) -> float:
        return self.first_in_zone_s + self.first_in_zone_per_gib_s * image_gib

    def with_overrides(self, overrides: Mapping[str, float]) -> LatencyProfile:
        unknown = set(overrides) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods in latency overrides: {sorted(unknown)}")
        return replace(self, overrides={**self.overrides, **overrides})


def _timed(name: str, column: int, **knobs: Any) -> LatencyProfile:
    """A profile whose operations take ``_RUNNING_S``'s ``column``."""
    return replace(
        LatencyProfile(name, {method: pair[column] for method, pair in _RUNNING_S.items()}), **knobs
    )


PROFILES: dict[str, LatencyProfile] = {
    "realistic": _timed(
        "realistic",
        0,
        jitter=0.3,
        pending_s=0.2,
        first_in_zone_s=20.0,
        first_in_zone_per_gib_s=2.0,
        image_per_gib_s=5.0,
        call_read_s=0.05,
        call_write_s=0.15,
    ),
    "fast": _timed("fast", 1, default_s=0.02, jitter=0.25, pending_s=0.005, first_in_zone_s=0.15),
    "instant": LatencyProfile(name="instant", operations={}, default_s=0.0),
}


def profile(name: str) -> LatencyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown latency profile {name!r} (known: {', '.join(PROFILES)})") from None
