"""Settling a scenario, checking the invariants, and the campaign's table (printed and written to out/chaos/).

A scenario calls ``settle`` after its chaos phase: the eventually-true invariants are polled (through
``wait_for``, no sleeps) until they hold or the deadline passes, then the fault-visibility check runs once
over the Events the scenario caused. ``record`` keeps one row per scenario; ``table`` renders them for the
terminal summary and ``write`` saves the table (markdown) and the raw rows (JSON) under ``out/chaos/``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker_tools.wait import WaitTimeout, wait_for
from tests.chaos import invariants as inv
from tests.chaos.world import World

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "chaos"


@dataclass
class Row:
    scenario: str
    faults: dict[str, int]
    results: dict[str, list[str]]  # invariant -> violations (empty: holds; absent: not checked)
    seconds: float
    note: str = ""


@dataclass
class Campaign:
    rows: list[Row] = field(default_factory=list)

    def record(self, row: Row) -> None:
        self.rows.append(row)

    def table(self) -> list[str]:
        head = ["scenario", "faults injected", *inv.ALL, "s"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            faults = ", ".join(f"{k}: {v}" for k, v in sorted(r.faults.items())) or "-"
            cells = []
            for name in inv.ALL:
                if name not in r.results:
                    cells.append("n/a")
                else:
                    cells.append("ok" if not r.results[name] else f"FAIL ({len(r.results[name])})")
            scenario = r.scenario + (f" [{r.note}]" if r.note else "")
            lines.append("| " + " | ".join([scenario, faults, *cells, f"{r.seconds:.0f}"]) + " |")
        return lines

    def write(self) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = OUT / f"chaos-{stamp}.md"
        path.write_text("\n".join(self.table()) + "\n")
        raw = [r.__dict__ for r in self.rows]
        (OUT / f"chaos-{stamp}.json").write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
        return path


def scenario_events(world: World) -> list[dict[str, Any]]:
    """Events about this scenario's RuntimeDisks (named after its nodes) and its SDWorkers."""
    events = world.core.list_event_for_all_namespaces().items
    out: list[dict[str, Any]] = []
    for e in events:
        obj = e.involved_object
        if (obj.kind == "RuntimeDisk" and world.label in (obj.name or "")) or (
            obj.kind == "SDWorker" and obj.namespace == world.namespace
        ):
            out.append(world.api.sanitize_for_serialization(e))
    return out


def check_now(
    world: World, *, phase: str | None, host_roots: Sequence[Path], final: bool
) -> dict[str, list[str]]:
    inventory = world.sim.inventory()
    rds, workers = world.runtimedisks(), world.sdworkers()
    results = {
        inv.LEAK: inv.leaked_disks(inventory, world.label, rds, workers),
        inv.DOUBLE_RW: inv.double_read_write(inventory),
        inv.FINALIZERS: inv.stuck_finalizers(rds, workers),
        inv.NODES: inv.nodes_served(world.live_nodes(), rds, phase),
    }
    if final:
        results[inv.LEFTOVERS] = inv.leftovers(host_roots, inventory, world.sim.state_dir)
    return {k: [str(v) for v in vs] for k, vs in results.items()}


def settle_checks(check: Callable[[], dict[str, list[str]]], *, timeout: float) -> dict[str, list[str]]:
    """Poll ``check`` (invariant -> violations) until nothing is violated or ``timeout`` passes; return the
    last results (if it never settles, the violations are the result)."""
    last: dict[str, list[str]] = {}

    def holds() -> bool:
        last.clear()
        last.update(check())
        return not any(last.values())

    with contextlib.suppress(WaitTimeout):
        wait_for(holds, timeout=timeout, what="the system to settle", interval=0.5)
    return last


def settle(
    world: World,
    *,
    phase: str | None,
    host_roots: Sequence[Path] = (),
    final: bool = False,
    windows: Sequence[inv.FaultWindow] = (),
    timeout: float = 180,
) -> dict[str, list[str]]:
    """Wait for the invariants to hold (they are eventual: the system must settle), then return the last
    results, with fault visibility checked over the scenario's Events."""
    last = settle_checks(
        lambda: check_now(world, phase=phase, host_roots=host_roots, final=final), timeout=timeout
    )
    if windows:
        last[inv.VISIBLE] = [str(v) for v in inv.faults_visible(windows, scenario_events(world))]
    return last


def merge(*results: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in results:
        for k, v in r.items():
            out.setdefault(k, []).extend(v)
    return out


def violations(results: dict[str, list[str]]) -> list[str]:
    return [f"[{k}] {v}" for k, vs in results.items() for v in vs]
