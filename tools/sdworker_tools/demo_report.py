"""How the demo reports a run: the SD pods' own milestones, and the check that every replica came up right.

Functions of the objects the demo lists (RuntimeDisks and SD pods as JSON), so what ``--ci`` judges is
exactly what the printed report shows, and a few figures scraped from the operator's /metrics.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sdworker import status_view
from sdworker.api.parse import parse_time
from sdworker_tools.chart_png import render_png
from sdworker_tools.journey import Credentials, check_serving

Json = dict[str, Any]


def time_of(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def pod_ready(pod: Json) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return time_of(cond.get("lastTransitionTime")) or datetime.min
    return None


def scheduled(pod: Json) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return time_of(cond.get("lastTransitionTime"))
    return None


def started(pod: Json) -> datetime | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        running = (status.get("state") or {}).get("running") or {}
        if running.get("startedAt"):
            return time_of(running["startedAt"])
    return None


def pod_timeline(rds: list[Json], pods: list[Json]) -> list[str]:
    """The SD pods' own milestones after their node was created: placed, process started, Ready."""
    created = {
        rd["spec"]["nodeName"]: time_of(((rd.get("status") or {}).get("timings") or {}).get("nodeCreated"))
        for rd in rds
    }
    lines = ["", f"{'POD':<34}{'NODE':<14}{'PLACED':>9}{'STARTED':>9}{'READY':>9}"]
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        node = (pod.get("spec") or {}).get("nodeName") or "-"
        origin = created.get(node)

        def rel(moment: datetime | None, origin: datetime | None = origin) -> str:
            return f"{(moment - origin).total_seconds():+.1f}s" if moment and origin else "-"

        lines.append(
            f"{pod['metadata']['name']:<34}{node:<14}{rel(scheduled(pod)):>9}{rel(started(pod)):>9}"
            f"{rel(pod_ready(pod)):>9}"
        )
    return lines


def verify(rds: list[Json], pods: list[Json], replicas: int) -> tuple[bool, list[str]]:
    """Every SD replica Ready, each on a node whose RuntimeDisk was Ready before the pod was placed there."""
    ready_at: dict[str, datetime] = {}
    for rd in rds:
        status = rd.get("status") or {}
        if status.get("phase") != "Ready":
            continue
        timings = status.get("timings") or {}
        moments = [time_of(timings.get(k)) for k in ("attached", "mounted", "verified", "prefetched")]
        ready_at[rd["spec"]["nodeName"]] = max(m for m in moments if m is not None)
    report, ok = [], True
    ready_pods = [p for p in pods if pod_ready(p) is not None]
    if len(ready_pods) < replicas:
        ok = False
        report.append(f"only {len(ready_pods)}/{replicas} SD replicas Ready")
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name, node = pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName") or "-"
        ready, placed = pod_ready(pod), scheduled(pod)
        disk = ready_at.get(node)
        if ready is None:
            ok = False
            report.append(f"{name} on {node}: not Ready")
        elif disk is None:
            ok = False
            report.append(f"{name} on {node}: Ready, but the node's RuntimeDisk is not Ready")
        elif placed is None or placed < disk.replace(microsecond=0):  # pod conditions keep whole seconds
            ok = False
            report.append(f"{name} on {node}: placed at {placed} before its runtime was Ready at {disk}")
        else:
            report.append(
                f"{name} on {node}: runtime Ready {disk:%H:%M:%S}, pod placed {placed:%H:%M:%S}, "
                f"Ready {ready:%H:%M:%S}"
            )
    return ok, report


def metrics_summary(port: int) -> list[str]:
    """A few figures from the operator's /metrics, to show where they come from."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return [f"cannot scrape the operator: {err}"]
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def mean(name: str, **labels: str) -> str:
        key = tuple(sorted(labels.items()))
        count = values.get((f"{name}_count", key), 0.0)
        return f"{values.get((f'{name}_sum', key), 0.0) / count:.2f}s (n={count:g})" if count else "-"

    calls = Counter[str]()
    for (name, labels), value in values.items():
        if name == "sdworker_cloud_calls_total":
            calls[f"{dict(labels)['method']}={dict(labels)['outcome']}"] += int(value)
    phase = "sdworker_phase_duration_seconds"
    waited = values.get(("sdworker_cloud_write_wait_seconds_total", ()), 0.0)
    return [
        f"operator http://127.0.0.1:{port}/metrics: "
        f"{phase} mean create {mean(phase, phase='create')}, attach {mean(phase, phase='attach')}; "
        f"sdworker_node_ready_seconds mean {mean('sdworker_node_ready_seconds')}",
        "sdworker_cloud_calls_total: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
        f"sdworker_cloud_write_wait_seconds_total {waited:.2f}",
    ]


def timeline(sdws: list[Json], rds: list[Json], pods: list[Json], chart: Path | None) -> list[str]:
    """The cold-start table (``sdworker.status_view``) and the pods' milestones; the chart written to
    ``chart`` (PNG, or SVG for a .svg name) when given."""
    model = status_view.summarize(sdws, rds)
    lines = ["", status_view.render(model), *pod_timeline(rds, pods)]
    if chart is not None:
        if chart.suffix == ".svg":
            chart.parent.mkdir(parents=True, exist_ok=True)
            chart.write_text(status_view.render_svg(model))
        else:
            render_png(model, chart)
        lines.append(f"[chart] the timeline as a picture: {chart.resolve()}")
    return lines


def serving_report(
    forward: Callable[[str, str, int], int], pods: list[Json], credentials: Credentials
) -> tuple[bool, list[str]]:
    """Each Ready SD pod, through its port (``forward``: the pod runner's port-forward), asked what a
    user would ask (``journey.check_serving``)."""
    ok, report = True, []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if pod_ready(pod) is None:
            continue
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        port = next(p["containerPort"] for p in container.get("ports") or [])
        args = container["args"]
        model = args[args.index("--ckpt") + 1].rsplit("/", 1)[1]
        local = forward(meta["namespace"], meta["name"], port)
        problems = check_serving(local, model, credentials)
        ok = ok and not problems
        report.append(
            f"{meta['name']} serves through 127.0.0.1:{local} -> :{port}: "
            + (
                "; ".join(problems)
                if problems
                else f"ready with {model}; /sdapi 401 without and 200 "
                "with credentials; UI file= assets 200 after login"
            )
        )
    return ok, report
