"""``sdworker status``: what the cluster's SDWorkers and RuntimeDisks say, as terminal tables or JSON.

Pure formatting over the objects as the API returns them (dicts): ``summarize`` turns SDWorkers and
RuntimeDisks into one JSON-ready model, ``render`` turns that model into text. The per-node part is the
cold-start timeline: when each step finished (nodeCreated -> diskCreated -> attached -> mounted ->
verified -> prefetched) as an offset from the node's creation, with the measured durations of the steps
(the operator's create/attach, the agent's fsck/mount/verify/prefetch). The operator and the agent write
their timestamps with microseconds (``format_micro_time``); ``nodeCreated`` is the Node's
``creationTimestamp``, which Kubernetes keeps in whole seconds, so offsets from it carry up to 1 s of that
rounding while the steps' own offsets and durations are precise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sdworker.api.parse import parse_rollout_status
from sdworker.api.types import TIMING_FIELDS

Json = dict[str, Any]
# Step durations as written in status.timings.durationsSeconds, in the order they happen.
DURATION_KEYS = ("createDisk", "attach", "fsck", "mount", "verify", "prefetch")
_SHORT = {
    "nodeCreated": "node",
    "diskCreated": "disk",
    "attached": "attach",
    "mounted": "mount",
    "verified": "verify",
    "prefetched": "prefetch",
}


def disk_source(disk_name: str) -> str:
    """Where a RuntimeDisk's cloud disk came from, by its name (``sdworker.api.naming``'s prefixes)."""
    if disk_name.startswith("sdwp-"):
        return "pool"  # claimed from the warm pool: only an attach on the node's path
    if disk_name.startswith("sdws-"):
        return "shared"  # the zone's one READ_ONLY disk
    return "new" if disk_name else "-"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _conditions(status: Mapping[str, Any]) -> list[Json]:
    out = []
    for cond in status.get("conditions") or []:
        out.append(
            {
                "type": cond.get("type", ""),
                "status": cond.get("status", ""),
                "reason": cond.get("reason", ""),
                "message": cond.get("message", ""),
            }
        )
    return out


def _rollout(status: Mapping[str, Any]) -> Json | None:
    going = parse_rollout_status(status.get("rollout"))
    return going.to_dict() if going is not None else None


def timeline(rd: Mapping[str, Any]) -> Json:
    """One RuntimeDisk's cold-start timeline: offsets (s) from nodeCreated, and step durations."""
    spec = rd.get("spec") or {}
    status = rd.get("status") or {}
    timings = status.get("timings") or {}
    start = _parse_time(timings.get("nodeCreated"))
    offsets: dict[str, float | None] = {}
    for key in TIMING_FIELDS:
        moment = _parse_time(timings.get(key))
        offsets[key] = (moment - start).total_seconds() if moment and start else None
    reached = [v for k, v in offsets.items() if v is not None and k != "nodeCreated"]
    durations = timings.get("durationsSeconds") or {}
    phase = status.get("phase") or "Pending"
    return {
        "name": rd.get("metadata", {}).get("name", ""),
        "node": spec.get("nodeName", ""),
        "runtimeId": spec.get("runtimeId", ""),
        "zone": spec.get("zone", ""),
        "disk": spec.get("diskName", ""),
        "diskSource": disk_source(str(spec.get("diskName", ""))),
        "phase": phase,
        "reason": status.get("reason", ""),
        "message": status.get("message", ""),
        "timestamps": {k: timings.get(k) for k in TIMING_FIELDS if timings.get(k)},
        "offsetsSeconds": offsets,
        "durationsSeconds": {k: float(durations[k]) for k in DURATION_KEYS if k in durations},
        # nodeCreated -> Ready (the agent's last step); None while not Ready.
        "readySeconds": max(reached) if phase == "Ready" and reached else None,
        "prefetch": status.get("prefetch"),
    }


def summarize(sdworkers: Iterable[Mapping[str, Any]], runtimedisks: Iterable[Mapping[str, Any]]) -> Json:
    """The model behind both outputs (``--output json`` prints it as is)."""
    disks = sorted((timeline(rd) for rd in runtimedisks), key=lambda t: (t["node"], t["runtimeId"]))
    workers = []
    for sdw in sorted(sdworkers, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        spec = sdw.get("spec") or {}
        status = sdw.get("status") or {}
        nodes = status.get("nodes") or {}
        runtime = status.get("runtime") or {}
        workers.append(
            {
                "namespace": sdw["metadata"].get("namespace", ""),
                "name": sdw["metadata"]["name"],
                "replicas": int(spec.get("replicas") or 0),
                "readyReplicas": int(status.get("readyReplicas") or 0),
                "nodes": {
                    "ready": int(nodes.get("ready") or 0),
                    "provisioning": int(nodes.get("provisioning") or 0),
                    "failed": int(nodes.get("failed") or 0),
                },
                "runtime": {
                    "image": runtime.get("image") or (spec.get("runtime") or {}).get("image", ""),
                    "runtimeId": runtime.get("runtimeId", ""),
                    "digest": runtime.get("digest", ""),
                },
                # A runtime rollout in progress (domain.rollout) as the operator recorded it; None: steady.
                "rollout": _rollout(status),
                "conditions": _conditions(status),
            }
        )
    ready = sorted(t["readySeconds"] for t in disks if t["readySeconds"] is not None)
    return {
        "sdworkers": workers,
        "runtimeDisks": disks,
        "summary": {
            "runtimeDisks": len(disks),
            "ready": len(ready),
            "readySecondsMin": ready[0] if ready else None,
            "readySecondsMedian": ready[len(ready) // 2] if ready else None,
            "readySecondsMax": ready[-1] if ready else None,
        },
    }


# --- text -----------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart (kubectl's style)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def _secs(value: float | None, *, plus: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}s" if abs(value) < 100 else f"{value:.0f}s"
    # Before the node registered (disks made for a NodeClaim) is negative: "-13.1s", never "+-13.1s".
    return f"+{text}" if plus and value >= 0 else text


def _conds(conditions: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for cond in conditions:
        mark = {"True": "", "False": "!", "Unknown": "?"}.get(str(cond["status"]), "?")
        reason = f"({cond['reason']})" if cond.get("reason") else ""
        parts.append(f"{mark}{cond['type']}{reason}")
    return " ".join(parts) or "-"


def _rolling(rollout: Mapping[str, Any] | None, replicas: int) -> str:
    """``-``, or the target runtime, its nodes ready/provisioning/failed and the replicas already on it."""
    if rollout is None:
        return "-"
    n = rollout["targetNodes"]
    text = (
        f"to {rollout['target']['runtimeId']} nodes {n['ready']}/{n['provisioning']}/{n['failed']}"
        f" replicas {rollout['updatedReplicas']}/{replicas}"
    )
    return f"{text} (paused)" if rollout["paused"] else text


def render_sdworkers(model: Mapping[str, Any]) -> str:
    rows = []
    for w in model["sdworkers"]:
        n = w["nodes"]
        rows.append(
            [
                f"{w['namespace']}/{w['name']}",
                str(w["replicas"]),
                f"{w['readyReplicas']}/{w['replicas']}",
                f"{n['ready']}/{n['provisioning']}/{n['failed']}",
                w["runtime"]["runtimeId"] or w["runtime"]["image"] or "-",
                _rolling(w["rollout"], w["replicas"]),
                _conds(w["conditions"]),
            ]
        )
    if not rows:
        return "No SDWorkers."
    headers = ["SDWORKER", "REPLICAS", "READY", "NODES R/P/F", "RUNTIME", "ROLLOUT", "CONDITIONS"]
    return table(headers, rows)


def render_timeline(model: Mapping[str, Any]) -> str:
    """Per node and runtime: phase, when each step finished (+s from node creation), step durations."""
    rows = []
    for t in model["runtimeDisks"]:
        off = t["offsetsSeconds"]
        d = t["durationsSeconds"]
        steps = " ".join(f"{k}={d[k]:.2f}" for k in DURATION_KEYS if k in d) or "-"
        rows.append(
            [
                t["node"],
                t["phase"],
                t["diskSource"],
                *(_secs(off.get(k), plus=True) for k in TIMING_FIELDS[1:]),
                _secs(t["readySeconds"]),
                steps,
            ]
        )
    if not rows:
        return "No RuntimeDisks."
    headers = [
        "NODE",
        "PHASE",
        "FROM",
        *(_SHORT[k].upper() for k in TIMING_FIELDS[1:]),
        "READY IN",
        "STEPS (s)",
    ]
    text = table(headers, rows)
    s = model["summary"]
    if s["ready"]:
        text += (
            f"\n{s['ready']}/{s['runtimeDisks']} Ready; node created -> runtime Ready: "
            f"min {_secs(s['readySecondsMin'])}, median {_secs(s['readySecondsMedian'])}, "
            f"max {_secs(s['readySecondsMax'])}"
        )
    for t in model["runtimeDisks"]:
        if t["phase"] == "Failed" or str(t["message"]).endswith("(retrying)"):
            text += f"\n  {t['node']}: {t['phase']} {t['reason']}: {t['message']}"
    return text


def render(model: Mapping[str, Any]) -> str:
    return (
        render_sdworkers(model)
        + "\n\nCold-start timeline (+seconds after the node was created; STEPS: measured durations)\n"
        + render_timeline(model)
    )


# --- chart ----------------------------------------------------------------------------------------

_SEGMENTS = (
    ("nodeCreated", "diskCreated", "disk created", "#4e79a7"),
    ("diskCreated", "attached", "attached", "#f28e2b"),
    ("attached", "mounted", "mounted", "#59a14f"),
    ("mounted", "verified", "verified", "#76b7b2"),
    ("verified", "prefetched", "prefetched", "#edc948"),
)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str = ""


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"  # start | middle
    bold: bool = False


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    colour: str


@dataclass(frozen=True)
class Chart:
    """The timeline chart as geometry, so the SVG and the PNG writers draw exactly the same thing."""

    width: int
    height: int
    boxes: tuple[Box, ...]
    labels: tuple[Label, ...]
    lines: tuple[Line, ...]


def chart_layout(model: Mapping[str, Any]) -> Chart:
    """One bar per node, one colour per step, on a shared seconds-after-node-created axis."""
    disks = model["runtimeDisks"]
    longest = max(
        [v for t in disks for v in t["offsetsSeconds"].values() if v is not None] + [1.0],
    )
    left, right, top, row_h, bar_h = 170, 30, 50, 28, 18
    width = 900
    scale = (width - left - right) / longest
    height = top + row_h * max(1, len(disks)) + 60
    boxes: list[Box] = []
    labels = [Label(10, 20, "Cold start per node: seconds after the Node was created", bold=True)]
    lines: list[Line] = []
    step = max(1, round(longest / 10))
    tick = 0
    while tick <= longest:
        x = left + tick * scale
        lines.append(Line(x, top - 8, x, height - 50, "#dddddd"))
        labels.append(Label(x, top - 12, f"{tick}s", anchor="middle"))
        tick += step
    for i, t in enumerate(disks):
        y = top + i * row_h
        labels.append(Label(10, y + bar_h - 4, f"{t['node']} ({t['phase']})"))
        offsets = t["offsetsSeconds"]
        for start_key, end_key, label, colour in _SEGMENTS:
            start, end = offsets.get(start_key), offsets.get(end_key)
            if start is None or end is None:
                continue
            w = max((end - start) * scale, 2.0)
            boxes.append(Box(left + start * scale, y, w, bar_h, colour, f"{label}: +{end:.2f}s"))
        if t["readySeconds"] is not None:
            labels.append(
                Label(left + t["readySeconds"] * scale + 4, y + bar_h - 4, f"{t['readySeconds']:.2f}s")
            )
    legend_y = height - 25
    for i, (_, _, label, colour) in enumerate(_SEGMENTS):
        x = left + i * 130
        boxes.append(Box(x, legend_y - 10, 12, 12, colour))
        labels.append(Label(x + 16, legend_y, label))
    return Chart(width, height, tuple(boxes), tuple(labels), tuple(lines))


def render_svg(model: Mapping[str, Any]) -> str:
    """The cold-start timeline as a self-contained SVG Gantt chart."""
    chart = chart_layout(model)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{chart.width}" height="{chart.height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{chart.width}" height="{chart.height}" fill="white"/>',
    ]
    for ln in chart.lines:
        out.append(
            f'<line x1="{ln.x1:.1f}" y1="{ln.y1}" x2="{ln.x2:.1f}" y2="{ln.y2}" stroke="{ln.colour}"/>'
        )
    for b in chart.boxes:
        title = f"<title>{_esc(b.title)}</title>" if b.title else ""
        out.append(
            f'<rect x="{b.x:.1f}" y="{b.y}" width="{b.w:.1f}" height="{b.h}" fill="{b.colour}">{title}</rect>'
        )
    for lb in chart.labels:
        anchor = ' text-anchor="middle"' if lb.anchor == "middle" else ""
        weight = ' font-size="14" font-weight="bold"' if lb.bold else ""
        out.append(f'<text x="{lb.x:.1f}" y="{lb.y}"{anchor}{weight}>{_esc(lb.text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
