"""The node agent's Prometheus metrics and its HTTP endpoint (liveness, readiness, /metrics).

Cold-start time on a new node is the figure sdworker exists to shrink, so each step the agent owns gets a
histogram (device wait, filesystem check, mount, verify, prefetch), prefetch throughput is exported, and
gauges show what the node serves right now. One registry per agent (not the global one) keeps the process
free of import-time state and lets tests build as many as they like. The endpoint is served from the
agent's event loop, so a wedged loop fails the liveness probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX: Final = "sdworker_agent_"
# Seconds: from a few milliseconds (a clean fsck, a digest-only verify) to minutes (prefetching a large
# checkpoint from a cold persistent disk).
STEP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def step(name: str, what: str) -> Histogram:
            return Histogram(f"{PREFIX}{name}_seconds", what, buckets=STEP_BUCKETS, registry=r)

        def gauge(name: str, what: str, *labels: str) -> Gauge:
            return Gauge(f"{PREFIX}{name}", what, labels, registry=r)

        def counter(name: str, what: str, *labels: str) -> Counter:
            return Counter(f"{PREFIX}{name}", what, labels, registry=r)

        # Cold start, step by step.
        self.device_wait_seconds = step(
            "device_wait", "Seconds from claiming a RuntimeDisk until its by-id device link was present."
        )
        self.fsck_seconds = step(
            "fsck", "Seconds spent checking a runtime disk's filesystem (blkid + e2fsck -n)."
        )
        self.mount_seconds = step("mount", "Seconds to check and mount a runtime disk read-only.")
        self.verify_seconds = step(
            "verify", "Seconds to verify a mounted runtime against its manifest digest."
        )
        self.prefetch_seconds = step(
            "prefetch", "Seconds to read a runtime's prefetch files into the page cache."
        )
        self.prefetch_bytes = counter("prefetch_bytes", "Bytes read into the page cache by prefetch.")
        self.prefetch_throughput = gauge(
            "prefetch_throughput_mbps",
            "Throughput of the last prefetch of each runtime, MB/s (10^6 bytes).",
            "runtime",
        )
        # What the node serves now.
        self.mounted_runtimes = gauge("mounted_runtimes", "Runtime disks mounted under the mount root.")
        self.serving_runtimes = gauge(
            "serving_runtimes", "Runtime disks that are Ready, mounted and labelled on the node."
        )
        self.runtimedisks = gauge("runtimedisks", "This node's RuntimeDisks by phase.", "phase")
        self.node_gated = gauge("node_gated", "1 while the node carries the sdworker startup taint.")
        self.bring_ups_in_flight = gauge("bring_ups_in_flight", "Mount/verify/prefetch runs in progress.")
        # What went wrong.
        self.failures = counter("failures", "RuntimeDisks marked Failed, by reason.", "reason")
        self.unmounts = counter("unmounts", "Runtime disks unmounted, by reason.", "reason")
        self.reconcile_errors = counter("reconcile_errors", "Reconcile passes that raised.")
        self.watch_restarts = counter("watch_restarts", "Times the RuntimeDisk list+watch was restarted.")

    def render(self) -> bytes:
        return generate_latest(self.registry)


def health_app(metrics: Metrics, *, alive: Callable[[], str], ready: Callable[[], str]) -> web.Application:
    """``alive``/``ready`` return an empty string when healthy, else why not (the probe's body)."""

    async def healthz(_: web.Request) -> web.Response:
        problem = alive()
        return web.Response(status=503 if problem else 200, text=problem or "ok")

    async def readyz(_: web.Request) -> web.Response:
        problem = ready()
        return web.Response(status=503 if problem else 200, text=problem or "ok")

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app
