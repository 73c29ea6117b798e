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

# Seconds: from a few milliseconds (a clean fsck, a digest-only verify) to minutes (prefetching a large
# checkpoint from a cold persistent disk).
STEP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.device_wait_seconds = Histogram(
            "sdworker_agent_device_wait_seconds",
            "Seconds from claiming a RuntimeDisk until its by-id device link was present.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.fsck_seconds = Histogram(
            "sdworker_agent_fsck_seconds",
            "Seconds spent checking a runtime disk's filesystem (blkid + e2fsck -n).",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.mount_seconds = Histogram(
            "sdworker_agent_mount_seconds",
            "Seconds to check and mount a runtime disk read-only.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.verify_seconds = Histogram(
            "sdworker_agent_verify_seconds",
            "Seconds to verify a mounted runtime against its manifest digest.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.prefetch_seconds = Histogram(
            "sdworker_agent_prefetch_seconds",
            "Seconds to read a runtime's prefetch files into the page cache.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.prefetch_bytes = Counter(
            "sdworker_agent_prefetch_bytes", "Bytes read into the page cache by prefetch.", registry=r
        )
        self.prefetch_throughput = Gauge(
            "sdworker_agent_prefetch_throughput_mbps",
            "Throughput of the last prefetch of each runtime, MB/s (10^6 bytes).",
            ["runtime"],
            registry=r,
        )
        self.mounted_runtimes = Gauge(
            "sdworker_agent_mounted_runtimes", "Runtime disks mounted under the mount root.", registry=r
        )
        self.serving_runtimes = Gauge(
            "sdworker_agent_serving_runtimes",
            "Runtime disks that are Ready, mounted and labelled on the node.",
            registry=r,
        )
        self.runtimedisks = Gauge(
            "sdworker_agent_runtimedisks", "This node's RuntimeDisks by phase.", ["phase"], registry=r
        )
        self.node_gated = Gauge(
            "sdworker_agent_node_gated", "1 while the node carries the sdworker startup taint.", registry=r
        )
        self.bring_ups_in_flight = Gauge(
            "sdworker_agent_bring_ups_in_flight", "Mount/verify/prefetch runs in progress.", registry=r
        )
        self.failures = Counter(
            "sdworker_agent_failures", "RuntimeDisks marked Failed, by reason.", ["reason"], registry=r
        )
        self.unmounts = Counter(
            "sdworker_agent_unmounts", "Runtime disks unmounted, by reason.", ["reason"], registry=r
        )
        self.reconcile_errors = Counter(
            "sdworker_agent_reconcile_errors", "Reconcile passes that raised.", registry=r
        )
        self.watch_restarts = Counter(
            "sdworker_agent_watch_restarts", "Times the RuntimeDisk list+watch was restarted.", registry=r
        )

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
