"""The operator's Prometheus metrics and their HTTP endpoint.

One module owns every metric the operator exports, so names, labels and help texts live in one place
(the README's table is written from this file). One registry per ``Metrics`` (not the global one): no
import-time state, and tests can build as many as they like. Callers get small methods
(``phase_done``, ``cloud_call``, ...) rather than the metric objects, so the controller, the
provisioner and the maintenance code stay free of prometheus details; every method is cheap and
never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger("sdworker.metrics")

# Seconds: a warm-pool claim or an already-attached disk (milliseconds) up to a disk from a large image
# in a cold zone (minutes).
PHASE_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# Node registered -> runtime Ready: the figure sdworker exists to shrink (seconds to many minutes).
READY_BUCKETS: Final = (1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
CALL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PHASES: Final = (
    "Pending",
    "Creating",
    "Attaching",
    "Attached",
    "Mounting",
    "Ready",
    "Detaching",
    "Deleting",
    "Failed",
)


class _FuncCounter(Collector):
    """A counter whose value is read from a callable at scrape time (e.g. the token bucket's total)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.source: Callable[[], float] | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation)
        value = 0.0
        if self.source is not None:
            try:
                value = float(self.source())
            except Exception:  # a scrape must never fail because of one source
                log.exception("metric %s: source failed", self.name)
        family.add_metric([], value)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.phase_duration = Histogram(
            "sdworker_phase_duration_seconds",
            "Seconds the operator spent in one provisioning phase of a RuntimeDisk "
            "(create: the cloud disk from the image, not observed for warm-pool disks; "
            "attach: attaching it to the node's VM).",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.node_ready = Histogram(
            "sdworker_node_ready_seconds",
            "Seconds from a Node's creation to its RuntimeDisk becoming Ready (mounted, verified, "
            "prefetched), observed once per RuntimeDisk when the operator sees it Ready.",
            buckets=READY_BUCKETS,
            registry=r,
        )
        self.cloud_calls = Counter(
            "sdworker_cloud_calls",
            "Compute API calls by method and outcome (ok, or the error table's reason).",
            ["method", "outcome"],
            registry=r,
        )
        self.cloud_call_duration = Histogram(
            "sdworker_cloud_call_duration_seconds",
            "Seconds per compute API call (one HTTP request; operation waits are separate calls).",
            ["method"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self._write_wait = _FuncCounter(
            "sdworker_cloud_write_wait_seconds",
            "Seconds cloud writes spent waiting for the write-quota token bucket, in total.",
        )
        r.register(self._write_wait)
        self.warm_pool_disks = Gauge(
            "sdworker_warm_pool_disks",
            "Unclaimed warm-pool disks per zone and runtime after the last refill.",
            ["zone", "runtime"],
            registry=r,
        )
        self.orphans_deleted = Counter(
            "sdworker_orphans_deleted",
            "Cloud disks deleted by the orphan sweeper (labelled ours, claimed by no RuntimeDisk, unused).",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "sdworker_reconcile_errors",
            "Reconcile steps that failed and will be retried (or failed the RuntimeDisk), by reason.",
            ["reason"],
            registry=r,
        )
        self.runtimedisks = Gauge(
            "sdworker_runtimedisks",
            "RuntimeDisks in the cluster by phase, as the operator sees them.",
            ["phase"],
            registry=r,
        )
        self.leader_gauge = Gauge(
            "sdworker_leader",
            "1 while this operator replica is the active one (standalone: always), 0 while it stands by.",
            registry=r,
        )
        for phase in PHASES:
            self.runtimedisks.labels(phase=phase).set(0)
        for phase in ("create", "attach"):
            self.phase_duration.labels(phase=phase)  # present (empty) before the first disk
        self._ready_seen: set[str] = set()
        # Disks already Ready before this process started were observed by its predecessor.
        self._started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)

    # --- what the rest of the operator calls -------------------------------------------------------

    def phase_done(self, phase: str, seconds: float) -> None:
        self.phase_duration.labels(phase=phase).observe(max(0.0, seconds))

    def cloud_call(self, method: str, outcome: str, seconds: float) -> None:
        """``GceCloud``'s observer."""
        self.cloud_calls.labels(method=method, outcome=outcome).inc()
        self.cloud_call_duration.labels(method=method).observe(max(0.0, seconds))

    def write_wait_from(self, source: Callable[[], float]) -> None:
        self._write_wait.source = source

    def reconcile_error(self, reason: str) -> None:
        self.reconcile_errors.labels(reason=reason or "Unknown").inc()

    def orphans(self, count: int) -> None:
        if count:
            self.orphans_deleted.inc(count)

    def warm_pool(self, sizes: Mapping[tuple[str, str], int]) -> None:
        """The pool sizes after a refill, per (zone, runtime id); pools not named are dropped."""
        self.warm_pool_disks.clear()
        for (zone, runtime), size in sizes.items():
            self.warm_pool_disks.labels(zone=zone, runtime=runtime).set(size)

    def leader(self, active: bool) -> None:
        self.leader_gauge.set(1 if active else 0)

    def runtimedisk_phases(self, phases: Iterable[str]) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for phase in phases:
            counts[phase or "Pending"] = counts.get(phase or "Pending", 0) + 1
        for phase, count in counts.items():
            self.runtimedisks.labels(phase=phase).set(count)

    def runtimedisk_ready(self, uid: str, node_created: datetime | None, ready: datetime | None) -> None:
        """Observe node-created -> Ready once per RuntimeDisk uid."""
        if uid in self._ready_seen or node_created is None or ready is None or ready < self._started:
            return
        self._ready_seen.add(uid)
        self.node_ready.observe(max(0.0, (ready - node_created).total_seconds()))

    def retain_ready(self, uids: Iterable[str]) -> None:
        """Forget RuntimeDisks that are gone (their uids never come back)."""
        self._ready_seen &= set(uids)

    # --- exposition ----------------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, address: str) -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (empty address: don't)."""
        if not address:
            return
        host, _, port = address.rpartition(":")
        try:
            start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)
        except OSError as err:
            # Reconciling matters more than being scraped: say so loudly and go on.
            log.error("cannot serve metrics on %s: %s", address, err)
            return
        log.info("serving metrics on http://%s/metrics", address)
