"""The issue's targets for the scale-out benchmark, checked against a run's analysed results.

Goals, not pass/fail timings (issue 15): each row says the goal, what this run measured for it and whether
it was met; a target no scenario of the run measures says so instead of passing. Pure arithmetic over
``scaleout_report.analyse``'s output, so it is unit-tested without a control plane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Target:
    goal: str
    measured: str  # every matching scenario's figure, or why none was measured
    met: bool | None  # None: not measured in this run


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _check(
    goal: str,
    results: Sequence[Json],
    pick: Callable[[Json], bool],
    figure: Callable[[Json], tuple[str, bool | None]],
) -> Target:
    rows = [(e["scenario"]["name"], *figure(e)) for e in results if pick(e)]
    if not rows:
        return Target(goal, "not measured in this run", None)
    measured = "; ".join(f"{name}: {text}" for name, text, _ in rows)
    verdicts = [ok for _, _, ok in rows if ok is not None]
    return Target(goal, measured, all(verdicts) if verdicts else None)


def _nodes(e: Json) -> int:
    return int(e["scenario"]["nodes"])


def _overhead(e: Json) -> tuple[str, bool | None]:
    s = e["sdworker"]["summary"]
    p50, p99 = s["overhead_p50_s"], s["overhead_p99_s"]
    ok = None if p50 is None or p99 is None else p50 <= 0.3 and p99 <= 1.0
    return f"p50 {_f(p50)} s, p99 {_f(p99)} s", ok


def _over(summary: Json, top: str, bottom: str) -> float | None:
    a, b = summary.get(top), summary.get(bottom)
    return a / b if a is not None and b else None


def quota_ratio(summary: Json) -> float | None:
    """Makespan over the quota floor (writes the scale-out needed / the regional write quota)."""
    return _over(summary, "makespan_s", "quota_floor_s")


def fresh_ratio(summary: Json) -> float | None:
    """Ready p50 over the cloud floor p50 (the simulator's own time on the node's disk and attach)."""
    return _over(summary, "ready_p50_s", "floor_p50_s")


def _quota(e: Json) -> tuple[str, bool | None]:
    s = e["sdworker"]["summary"]
    ratio = quota_ratio(s)
    done = s["ready"] == s["expected"]
    text = f"makespan {_f(s['makespan_s'], 1)} s / floor {_f(s['quota_floor_s'], 1)} s = {_f(ratio)}x"
    text += "" if done else f" ({s['ready']}/{s['expected']} Ready)"
    return text, None if ratio is None else done and ratio <= 1.15


def _fresh(e: Json) -> tuple[str, bool | None]:
    s = e["sdworker"]["summary"]
    ratio = fresh_ratio(s)
    text = (
        f"ready p50 {_f(s['ready_p50_s'])} s / floor {_f(s['floor_p50_s'])} s = {_f(ratio)}x ({e['latency']})"
    )
    return text, None if ratio is None else ratio <= 1.05


def _rss(e: Json) -> tuple[str, bool | None]:
    rss = float(e["sdworker"]["operator"]["peak_rss_mb"])
    return f"{rss:.0f} MB", rss <= 250.0


def _pool(e: Json) -> tuple[str, bool | None]:
    ratio = e.get("ratio_p50")
    return f"reference / sdworker p50 {_f(ratio)}x", None if ratio is None else ratio >= 5.0


def targets(results: Sequence[Json]) -> list[Target]:
    def loop(e: Json) -> bool:
        return str(e["scenario"].get("hosts", "loop")) == "loop"

    return [
        _check(
            "overhead p50 <= 0.3 s, p99 <= 1 s at 100 nodes",
            results,
            lambda e: _nodes(e) == 100 and loop(e),
            _overhead,
        ),
        _check("1000 nodes within 1.15x of the quota floor", results, lambda e: _nodes(e) >= 1000, _quota),
        _check("operator peak RSS <= 250 MB at 1000 nodes", results, lambda e: _nodes(e) >= 1000, _rss),
        _check(
            "warm pool node -> Ready >= 5x faster than the reference's disk reuse",
            results,
            lambda e: e["scenario"]["mode"] == "pool" and "reference" in e,
            _pool,
        ),
        _check(
            "fresh disk within 1.05x of the simulated cloud floor",
            results,
            lambda e: e["scenario"]["mode"] == "pernode" and e["latency"] == "realistic",
            _fresh,
        ),
    ]


def table(results: Sequence[Json]) -> str:
    rows = ["| target | measured | met? |", "|---|---|---|"]
    for t in targets(results):
        met = "not measured" if t.met is None else ("yes" if t.met else "**no**")
        rows.append(f"| {t.goal} | {t.measured} | {met} |")
    return "\n".join(rows)
