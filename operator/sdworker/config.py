"""The operator's configuration: one frozen object built from ``sdworker run``'s flags, checked in one place.

``__main__`` parses the command line, ``OperatorConfig.from_args`` turns it into this object (refusing a bad
value with an error that names the flag), and kopf hands it to the startup handler through its ``memo``;
nothing else holds settings, so what the operator runs with is exactly what was validated here.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Final

from sdworker.api import naming
from sdworker.cloud.provider import CLOUD_THREADS
from sdworker.domain.leadership import PRIORITY_MAX

CLOUDS: Final = ("gce", "none")
# GCE project ids (6-30 characters), optionally domain-scoped (example.com:my-project), as in providerIDs.
_PROJECT_RE: Final = re.compile(r"([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")
# The sdworker-cluster label value on every cloud disk (the chart's values.schema.json pattern).
_CLUSTER_RE: Final = re.compile(r"[a-z][-_a-z0-9]{0,62}")
_ADDRESS_RE: Final = re.compile(r"(?P<host>[^\s:/]+|\[[0-9a-fA-F:.]+\]):(?P<port>[0-9]{1,5})")


class ConfigError(ValueError):
    """A flag value the operator cannot run with; the message starts with the flag's name."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class OperatorConfig:
    """Everything ``sdworker run`` is told; these defaults are the command line's (``__main__.parser``)."""

    kubeconfig: str | None = None
    health_address: str = "0.0.0.0:8080"
    metrics_address: str = "0.0.0.0:9090"  # empty: no metrics endpoint
    peering: str = ""  # kopf peering name; empty: standalone
    peering_priority: int | None = None  # None: oldest wins (domain.leadership.oldest_wins)
    resync_seconds: float = 60.0
    cluster_name: str = "sdworker"
    cloud: str = "gce"
    compute_endpoint: str | None = None
    anonymous_credentials: bool = False
    project: str | None = None  # the project the orphan sweeper searches even when no node is left
    write_quota: float = 20.0
    write_burst: int = 5
    cloud_threads: int = CLOUD_THREADS  # cloud calls in flight at once (cloud.provider.CLOUD_THREADS)
    sweep_seconds: float = 300.0
    failed_retry_seconds: float = 300.0  # the longest wait before a Failed RuntimeDisk is tried again
    preprovision: bool = True
    verbose: bool = False

    def __post_init__(self) -> None:
        _check_address("--health-address", self.health_address)
        if self.metrics_address:
            _check_address("--metrics-address", self.metrics_address)
        if self.peering and not (
            len(self.peering) <= naming.SUBDOMAIN_MAX and naming.SUBDOMAIN_RE.fullmatch(self.peering)
        ):
            raise ConfigError("--peering", f"{self.peering!r} is not a Kubernetes object name")
        if self.peering_priority is not None:
            if not self.peering:
                raise ConfigError("--peering-priority", "is a kopf peering priority: it needs --peering")
            if not 0 <= self.peering_priority <= PRIORITY_MAX:
                raise ConfigError(
                    "--peering-priority", f"must be in 0..{PRIORITY_MAX}, not {self.peering_priority}"
                )
        for flag, value in (
            ("--resync-seconds", self.resync_seconds),
            ("--sweep-seconds", self.sweep_seconds),
            ("--failed-retry-seconds", self.failed_retry_seconds),
            ("--write-quota", self.write_quota),
        ):
            if not value > 0:  # also refuses NaN
                raise ConfigError(flag, f"must be a positive number of seconds or writes, not {value}")
        if self.write_burst < 1:
            raise ConfigError("--write-burst", f"must be at least 1, not {self.write_burst}")
        if self.cloud_threads < 1:
            raise ConfigError("--cloud-threads", f"must be at least 1, not {self.cloud_threads}")
        if not _CLUSTER_RE.fullmatch(self.cluster_name):
            raise ConfigError(
                "--cluster-name",
                f"{self.cluster_name!r} is not a GCE label value"
                " (a lowercase letter, then at most 62 of a-z 0-9 - _)",
            )
        if self.cloud not in CLOUDS:
            raise ConfigError("--cloud", f"{self.cloud!r} is not one of {', '.join(CLOUDS)}")
        if self.project is not None and not _PROJECT_RE.fullmatch(self.project):
            raise ConfigError("--project", f"{self.project!r} is not a GCE project id")
        if self.anonymous_credentials and not self.compute_endpoint:
            # Anonymous calls to the real compute API fail late and obscurely; only the simulator takes them.
            raise ConfigError("--anonymous-credentials", "is for the simulator: it needs --compute-endpoint")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OperatorConfig:
        """The configuration of ``sdworker run``'s parsed flags (each flag's ``dest`` is its field's name);
        an empty optional value means unset. ``ConfigError`` names a bad flag."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        unset: dict[str, Any] = {k: None for k, v in values.items() if v == "" and k in _OPTIONAL}
        return cls(**{**values, **unset})


_OPTIONAL: Final = frozenset(f.name for f in dataclasses.fields(OperatorConfig) if f.default is None)


def _check_address(flag: str, address: str) -> None:
    match = _ADDRESS_RE.fullmatch(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(flag, f"{address!r} is not host:port with a port in 1-65535")
