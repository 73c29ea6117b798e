"""The scale-out benchmark's arithmetic and outputs: per-node phases, cloud floor, overhead, table, plots.

Kept apart from the runner (``bench/bench_scaleout.py``) so the figures can be recomputed from a saved
JSON without running anything (``python -m bench.scaleout_report bench/results/scaleout.json [TAG]``).

Definitions (also in bench/README.md):

* **ready**: node created (this script's clock, just before the Node create call) -> the RuntimeDisk's last
  agent step (``mounted``/``verified``/``prefetched``, microsecond timestamps), or the reference's mount.
* **cloud floor**: for the node's own operations (the ``disks.insert`` of its disk, the
  ``instances.attachDisk`` on its VM), the time the simulator spent on them after the node existed: from
  the insert call's start (``insertedAt`` - the call latency) to ``endedAt``, clipped at node creation (a
  warm-pool or shared disk made earlier costs the node nothing). This is the simulator's injected latency
  (``injectedS``: call + pending + running) plus any wait behind other operations on the same resource,
  which is the simulated cloud's own serialisation. Polling reads are not in the floor: how often to poll
  is the client's choice.
* **overhead** = ready - cloud floor.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scaleout_targets
from PIL import Image, ImageDraw, ImageFont

from sdworker import status_view
from sdworker.api.types import format_micro_time
from sdworker_tools.chart_png import render_png
from sdworker_tools.computesim.latency import profile

Json = dict[str, Any]
AGENT_STEPS = ("mounted", "verified", "prefetched")


def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cloud_floor(ops: Iterable[Json], *, disk: str | None, instance: str, t0: float, call_s: float) -> float:
    total = 0.0
    for op in ops:
        sim = op.get("_sim") or {}
        target = str(op.get("targetLink", ""))
        method = sim.get("method")
        mine = (method == "disks.insert" and disk is not None and target.endswith(f"/disks/{disk}")) or (
            method == "instances.attachDisk" and target.endswith(f"/instances/{instance}")
        )
        if not mine or sim.get("insertedAt") is None:
            continue
        ended = sim.get("endedAt") or time.time()
        total += max(0.0, ended - max(sim["insertedAt"] - call_s, t0))
    return total


def _calls(requests: Sequence[Json], nodes: int) -> Json:
    writes = sum(bool(r["write"]) for r in requests)
    limited = sum(r.get("reason") == "rateLimitExceeded" for r in requests)
    return {
        "total": len(requests),
        "writes": writes,
        "rate_limited": limited,
        "per_node": len(requests) / max(1, nodes),
        "writes_per_node": writes / max(1, nodes),
    }


def _summary(nodes: list[Json], expected: int, created: dict[str, float]) -> Json:
    ready = [n["ready_s"] for n in nodes if n["ready_s"] is not None]
    overhead = [n["overhead_s"] for n in nodes if n["overhead_s"] is not None]
    floor = [n["cloud_floor_s"] for n in nodes if n["ready_s"] is not None]
    last = max((n["ready_at"] for n in nodes if n["ready_at"] is not None), default=None)
    return {
        "ready": len(ready),
        "expected": expected,
        "ready_p50_s": pct(ready, 50),
        "ready_p90_s": pct(ready, 90),
        "ready_p99_s": pct(ready, 99),
        "ready_max_s": max(ready, default=None),
        "floor_p50_s": pct(floor, 50),
        "overhead_p50_s": pct(overhead, 50),
        "overhead_p99_s": pct(overhead, 99),
        "overhead_max_s": max(overhead, default=None),
        "makespan_s": (last - min(created.values())) if last is not None and created else None,
        "attached_p50_s": pct([n["attached_s"] for n in nodes if n.get("attached_s") is not None], 50),
        "attached_max_s": max(
            (n["attached_s"] for n in nodes if n.get("attached_s") is not None), default=None
        ),
        "agent_up_p50_s": pct([n["agent_up_s"] for n in nodes if n.get("agent_up_s") is not None], 50),
        "agent_wait_p50_s": pct([n["agent_wait_s"] for n in nodes if n.get("agent_wait_s") is not None], 50),
    }


def _sdworker_nodes(run: Json, call_s: float) -> list[Json]:
    out = []
    by_node = {rd["spec"]["nodeName"]: rd for rd in run["runtimedisks"]}
    for node, t0 in sorted(run["created"].items()):
        rd = by_node.get(node) or {"spec": {}, "status": {}}
        spec, status = rd.get("spec") or {}, rd.get("status") or {}
        tm = status.get("timings") or {}
        moments = {k: _epoch(tm.get(k)) for k in ("diskCreated", "attached", *AGENT_STEPS)}
        agent = [m for m in (moments[k] for k in AGENT_STEPS) if m is not None]
        ready_at = max(agent) if status.get("phase") == "Ready" and agent else None
        floor = cloud_floor(
            run["operations"],
            disk=spec.get("diskName"),
            instance=spec.get("instance", node),
            t0=t0,
            call_s=call_s,
        )
        marks = [("node", t0), ("diskCreated", moments["diskCreated"]), ("attached", moments["attached"])]
        marks += [("mounted", moments["mounted"]), ("ready", ready_at)]
        phases = {}
        for (_, a), (b_name, b) in itertools.pairwise(marks):
            if a is not None and b is not None:
                phases[b_name] = round(b - a, 6)
        ready_s = ready_at - t0 if ready_at is not None else None
        up = (run.get("agent_up") or {}).get(node) or []
        agent_up = up[1] if len(up) > 1 else None
        attached = moments["attached"]
        out.append(
            {
                "node": node,
                "agent_up_s": agent_up - t0 if agent_up is not None else None,
                "attached_s": attached - t0 if attached is not None else None,
                # Of the mount phase, the time the node's agent was not yet running (started late or slowly).
                "agent_wait_s": max(0.0, agent_up - attached) if agent_up and attached else None,
                "disk": spec.get("diskName"),
                "source": status_view.disk_source(str(spec.get("diskName", ""))),
                "phases_s": phases,
                "ready_at": ready_at,
                "ready_s": ready_s,
                "cloud_floor_s": floor,
                "overhead_s": ready_s - floor if ready_s is not None else None,
                "durations_s": tm.get("durationsSeconds") or {},
            }
        )
    return out


def _reference_nodes(run: Json, call_s: float) -> list[Json]:
    out = []
    for node, t0 in sorted(run["created"].items()):
        info = run["nodes"].get(node) or {"marks": []}
        marks = [(str(s), float(t)) for s, t in info["marks"]]
        ready_at = next((t for s, t in marks if s == "mounted"), None)
        disk = next(
            (
                str(op["targetLink"]).rsplit("/", 1)[-1]
                for op in run["operations"]
                if (op.get("_sim") or {}).get("method") == "disks.insert"
                and str(op.get("targetLink", "")).endswith(f"-{node}")
            ),
            None,
        )
        floor = cloud_floor(run["operations"], disk=disk, instance=node, t0=t0, call_s=call_s)
        phases: dict[str, float] = {}
        prev = t0
        for step, t in marks:
            phases[step] = round(phases.get(step, 0.0) + t - prev, 6)
            prev = t
        ready_s = ready_at - t0 if ready_at is not None else None
        out.append(
            {
                "node": node,
                "disk": disk,
                "rc": info.get("rc"),
                "phases_s": phases,
                "ready_at": ready_at,
                "ready_s": ready_s,
                "cloud_floor_s": floor,
                "overhead_s": ready_s - floor if ready_s is not None else None,
            }
        )
    return out


def analyse(entry: Json) -> Json:
    """Add per-node figures and a summary to each run of a scenario entry (in place; returned)."""
    call_s = profile(entry["latency"]).call_write_s
    quota = float(entry["write_quota"])
    sdw = entry["sdworker"]
    # Karpenter packs replicas onto nodes (a 2-GPU type holds two): count its nodes, not the replicas.
    autoscaled = entry["scenario"].get("join") == "autoscaler"
    n = len(sdw["created"]) if autoscaled else int(entry["scenario"]["nodes"])
    sdw["per_node"] = _sdworker_nodes(sdw, call_s)
    sdw["summary"] = _summary(sdw["per_node"], n, sdw["created"])
    sdw["summary"]["cloud_calls"] = _calls(sdw["requests"], n)
    sdw["summary"]["quota_floor_s"] = sdw["summary"]["cloud_calls"]["writes"] / quota
    kube = sdw["kube_calls"]
    ours = sum(v for k, v in kube.items() if "sdworker.dev/" in k)
    node_writes = sum(
        v for k, v in kube.items() if k.split()[0] in ("PATCH", "UPDATE") and k.endswith("core/nodes")
    )
    sdw["summary"]["kube_calls_per_node"] = {"sdworker.dev": ours / n, "node writes": node_writes / n}
    ref = entry.get("reference")
    if ref is not None:
        ref["per_node"] = _reference_nodes(ref, call_s)
        ref["summary"] = _summary(ref["per_node"], len(ref["created"]), ref["created"])
        ref["summary"]["cloud_calls"] = _calls(ref["requests"], len(ref["created"]))
        a, b = ref["summary"]["ready_p50_s"], sdw["summary"]["ready_p50_s"]
        entry["ratio_p50"] = a / b if a and b else None
        a, b = ref["summary"]["makespan_s"], sdw["summary"]["makespan_s"]
        entry["ratio_makespan"] = a / b if a and b else None
    return entry


def top_frames(raw: Path, count: int = 25) -> Json:
    """py-spy's collapsed stacks (``--format raw``) -> the heaviest frames, inclusive and self, in % of
    samples; the operator's own frames (``sdworker``) listed apart from the libraries'."""
    if not raw.is_file():
        return {"samples": 0, "inclusive": [], "self": [], "ours": []}
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        for frame in dict.fromkeys(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)

    def top(d: dict[str, int], keep: Callable[[str], bool] = lambda _: True) -> list[list[Any]]:
        rows = sorted(((v, k) for k, v in d.items() if keep(k)), reverse=True)[:count]
        return [[k, round(100 * v / max(1, total), 1)] for v, k in rows]

    return {
        "samples": total,
        "inclusive": top(inclusive),
        "self": top(own),
        "ours": top(inclusive, lambda k: "sdworker/" in k and "__main__" not in k),
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def one_line(entry: Json) -> str:
    s = entry["sdworker"]["summary"]
    line = (
        f"[bench] {entry['scenario']['name']}: sdworker ready p50 {_f(s['ready_p50_s'])}s "
        f"(floor {_f(s['floor_p50_s'])}s, overhead p50 {_f(s['overhead_p50_s'])}s "
        f"p99 {_f(s['overhead_p99_s'])}s), "
        f"{s['ready']}/{s['expected']} ready"
    )
    if "reference" in entry:
        r = entry["reference"]["summary"]
        line += f"; reference p50 {_f(r['ready_p50_s'])}s, ratio {_f(entry.get('ratio_p50'))}x"
    return line


HEADER = (
    "| scenario | run | ready | ready p50 / p99 / max (s) | cloud floor p50 (s) | overhead p50 / p99 (s) "
    "| agent up p50 (s) | makespan (s) | cloud calls/node (writes) | kube calls/node | CPU s | peak RSS MB "
    "| ref/sdw p50 |"
)


def table(results: Sequence[Json]) -> str:
    rows = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for e in results:
        sc = e["scenario"]
        label = sc.get("label") or f"{sc['name']} ({sc['join']})"
        for run in ("sdworker", "reference"):
            if run not in e:
                continue
            s = e[run]["summary"]
            calls = s["cloud_calls"]
            if run == "sdworker":
                k = s["kube_calls_per_node"]
                kube = f"{k['sdworker.dev']:.1f} + {k['node writes']:.1f} node"
                op, ag = e[run]["operator"], e[run]["agents"]
                cpu = f"op {op['cpu_s']:.1f} / agents {ag['cpu_s_total']:.1f}"
                rss = f"op {op['peak_rss_mb']:.0f} / agent {ag['peak_rss_mb_max']:.0f}"
                ratio = ""
            else:
                kube = "0"
                cpu = f"gcloud {e[run]['gcloud']['cpu_s_total']:.1f}"
                rss = f"gcloud {e[run]['gcloud']['peak_rss_mb_max']:.0f}"
                ratio = f"**{_f(e.get('ratio_p50'))}x**"
            rows.append(
                f"| {label} | {run} | {s['ready']}/{s['expected']} "
                f"| {_f(s['ready_p50_s'])} / {_f(s['ready_p99_s'])} / {_f(s['ready_max_s'])} "
                f"| {_f(s['floor_p50_s'])} | {_f(s['overhead_p50_s'])} / {_f(s['overhead_p99_s'])} "
                f"| {_f(s['agent_up_p50_s'])} | {_f(s['makespan_s'], 1)} "
                f"| {calls['per_node']:.1f} ({calls['writes_per_node']:.1f}) "
                f"| {kube} | {cpu} | {rss} | {ratio} |"
            )
    return "\n".join(rows)


# --- plots ---------------------------------------------------------------------------------------------

COLOURS = {"floor": "#4e79a7", "sdworker": "#f28e2b", "reference": "#e15759"}


def plot_ready(results: Sequence[Json], path: Path) -> Path:
    """Per scenario, a bar per run: p50 ready split into cloud floor (blue) and overhead (run colour)."""
    bars = [
        (e["scenario"]["name"], run, e[run]["summary"])
        for e in results
        for run in ("sdworker", "reference")
        if run in e
    ]
    top = max([b[2]["ready_p50_s"] or 0.0 for b in bars] + [1.0])
    left, bottom, bar_w, gap, height = 60, 90, 36, 40, 420
    width = left + 40 + len(bars) * (bar_w + 4) + len(results) * gap
    img = Image.new("RGB", (max(width, 480), height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    plot_h = height - bottom - 40
    scale = plot_h / top
    d.text(
        (left, 12), "node created -> runtime Ready, p50 (s): cloud floor + overhead", fill="black", font=font
    )
    for i in range(6):
        v = top * i / 5
        y = height - bottom - v * scale
        d.line([(left - 4, y), (img.width - 10, y)], fill="#dddddd")
        d.text((left - 8, y), f"{v:.1f}", fill="black", font=font, anchor="rm")
    x, prev = left + 10, None
    named: set[str] = set()
    for name, run, s in bars:
        if prev is not None and name != prev:
            x += gap
        prev = name
        ready, floor = s["ready_p50_s"] or 0.0, min(s["floor_p50_s"] or 0.0, s["ready_p50_s"] or 0.0)
        base = height - bottom
        d.rectangle([x, base - floor * scale, x + bar_w, base], fill=COLOURS["floor"])
        d.rectangle([x, base - ready * scale, x + bar_w, base - floor * scale], fill=COLOURS[run])
        if name not in named:  # the scenario's name once, under its first bar
            named.add(name)
            d.text((x, base + 22), name, fill="black", font=font, anchor="lt")
        d.text((x + bar_w / 2, base + 6), run[:3], fill="black", font=font, anchor="mt")
        d.text(
            (x + bar_w / 2, base - ready * scale - 4), f"{ready:.1f}", fill="black", font=font, anchor="mb"
        )
        x += bar_w + 4
    for i, (label, colour) in enumerate(COLOURS.items()):
        d.rectangle([left + i * 120, height - 30, left + i * 120 + 12, height - 18], fill=colour)
        d.text((left + i * 120 + 16, height - 30), label, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def plot_overhead(results: Sequence[Json], path: Path) -> Path:
    """sdworker's per-node overhead, sorted, one line per scenario (x: node rank as a fraction)."""
    series = [
        (
            e["scenario"]["name"],
            sorted(n["overhead_s"] for n in e["sdworker"]["per_node"] if n["overhead_s"] is not None),
        )
        for e in results
    ]
    top = max([v for _, vs in series for v in vs] + [0.5])
    width, height, left, bottom = 640, 380, 60, 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    d.text((left, 10), "sdworker overhead per node (s), sorted: x = share of nodes", fill="black", font=font)
    ph, pw = height - bottom - 40, width - left - 160
    for i in range(6):
        v = top * i / 5
        y = height - bottom - v / top * ph
        d.line([(left, y), (left + pw, y)], fill="#dddddd")
        d.text((left - 6, y), f"{v:.2f}", fill="black", font=font, anchor="rm")
    palette = [
        "#4e79a7",
        "#f28e2b",
        "#e15759",
        "#76b7b2",
        "#59a14f",
        "#edc948",
        "#b07aa1",
        "#ff9da7",
        "#9c755f",
    ]
    for k, (name, vs) in enumerate(series):
        colour = palette[k % len(palette)]
        pts = [(left + (i + 0.5) / len(vs) * pw, height - bottom - v / top * ph) for i, v in enumerate(vs)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts if len(pts) <= 10 else []:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        d.text((left + pw + 12, 50 + 16 * k), name, fill=colour, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


TIMELINE_ROWS = 100


def plot_timeline(entry: Json, path: Path) -> Path:
    """The ``sdworker status`` cold-start chart of the run, from this script's precise node creation times
    (at most ``TIMELINE_ROWS`` nodes, evenly spaced in creation order, so a 1000-node run stays legible)."""
    created = entry["sdworker"]["created"]
    every = sorted(entry["sdworker"]["runtimedisks"], key=lambda rd: created.get(rd["spec"]["nodeName"], 0.0))
    step = max(1, -(-len(every) // TIMELINE_ROWS))
    rds = []
    for rd in every[::step]:
        node = rd["spec"]["nodeName"]
        t0 = entry["sdworker"]["created"].get(node)
        status = dict(rd.get("status") or {})
        timings = dict(status.get("timings") or {})
        if t0 is not None:
            timings["nodeCreated"] = format_micro_time(datetime.fromtimestamp(t0, UTC))
        status["timings"] = timings
        rds.append({**rd, "status": status})
    return render_png(status_view.summarize([], rds), path)


def write(results: Sequence[Json], out: Path, *, tag: str = "") -> list[Path]:
    """scaleout[-tag].json, .md and the PNGs; returns [json, md, pngs...]."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"scaleout{'-' + tag if tag else ''}"
    js = out / f"{stem}.json"
    js.write_text(json.dumps(list(results), indent=1, default=str))
    md = out / f"{stem}.md"
    first = results[0] if results else {"latency": "-", "write_quota": 0}
    loads = [e[k] for e in results for k in ("load_before", "load_after") if k in e]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
    md.write_text(
        f"Scale-out, latency profile `{first['latency']}`, write quota {first['write_quota']:g}/s, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load}\n\n{table(results)}\n\n"
        f"Against the issue's targets:\n\n{scaleout_targets.table(results)}\n"
    )
    pngs = [
        plot_ready(results, out / f"{stem}-ready.png"),
        plot_overhead(results, out / f"{stem}-overhead.png"),
    ]
    pngs += [plot_timeline(e, out / f"{stem}-timeline-{e['scenario']['name']}.png") for e in results]
    return [js, md, *pngs]


if __name__ == "__main__":
    saved = json.loads(Path(sys.argv[1]).read_text())
    tag = sys.argv[2] if len(sys.argv) > 2 else "recomputed"
    for p in write([analyse(e) for e in saved], Path(sys.argv[1]).parent, tag=tag):
        print(p)
