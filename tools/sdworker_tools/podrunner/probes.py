"""A running container's startup, readiness and liveness probes, as the kubelet's prober workers run them.

One thread per container (pkg/kubelet/prober/worker.go): each probe first runs ``initialDelaySeconds`` after
the container started and then every ``periodSeconds``; readiness and liveness wait until the startup probe
has succeeded; ``failureThreshold`` consecutive failures (``successThreshold`` successes) flip a result. A
failing startup or liveness probe asks for the container to be killed; each failure is an ``Unhealthy``
Event. The HTTP request itself runs inside the pod's network namespace (``netns.http_probe``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from sdworker_tools.podrunner.netns import http_probe
from sdworker_tools.podrunner.spec import Probe

Unhealthy = Callable[[str], None]  # an event message, e.g. "Readiness probe failed: ..."


class Prober(threading.Thread):
    def __init__(
        self,
        netns: Path,
        probes: dict[str, Probe | None],
        unhealthy: Unhealthy,
        changed: Callable[[], None],
    ) -> None:
        super().__init__(name="prober", daemon=True)
        self.netns = netns
        self.startup = probes.get("startup")
        self.readiness = probes.get("readiness")
        self.liveness = probes.get("liveness")
        self.unhealthy = unhealthy
        self.changed = changed
        self.started = self.startup is None
        self.ready = self.started and self.readiness is None
        self.kill_reason: str | None = None  # "startup" | "liveness" once the container must be restarted
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        schedule = {
            probe.kind: self._t0 + probe.initial_delay
            for probe in (self.startup, self.readiness, self.liveness)
            if probe is not None
        }
        failures = dict.fromkeys(schedule, 0)
        successes = dict.fromkeys(schedule, 0)
        while not self._halt.is_set() and self.kill_reason is None:
            now = time.monotonic()
            for probe in (self.startup, self.readiness, self.liveness):
                if probe is None or schedule[probe.kind] > now:
                    continue
                if probe.kind != "startup" and not self.started:
                    continue
                if probe.kind == "startup" and self.started:
                    continue
                schedule[probe.kind] = now + probe.period
                ok, message = http_probe(self.netns, probe)
                if self._halt.is_set():
                    return
                self._record(probe, ok, message, failures, successes)
            if not self.started or self.readiness is not None or self.liveness is not None:
                pending = [at for kind, at in schedule.items() if kind != "startup" or not self.started]
                delay = max(0.05, min(pending, default=now + 1.0) - time.monotonic())
            else:
                delay = 1.0
            self._halt.wait(min(delay, 1.0))

    def _record(
        self, probe: Probe, ok: bool, message: str, failures: dict[str, int], successes: dict[str, int]
    ) -> None:
        if ok:
            failures[probe.kind] = 0
            successes[probe.kind] += 1
            if probe.kind == "startup":
                self.started = True
                # Without a readiness probe a started container is ready (prober_manager.go).
                self.ready = self.readiness is None
                self.changed()
            elif (
                probe.kind == "readiness"
                and successes[probe.kind] >= probe.success_threshold
                and not self.ready
            ):
                self.ready = True
                self.changed()
            return
        successes[probe.kind] = 0
        failures[probe.kind] += 1
        self.unhealthy(f"{probe.kind.capitalize()} probe failed: {message}")
        if failures[probe.kind] < probe.failure_threshold:
            return
        if probe.kind == "readiness":
            if self.ready:
                self.ready = False
                self.changed()
        else:
            self.kill_reason = probe.kind
            self.changed()
