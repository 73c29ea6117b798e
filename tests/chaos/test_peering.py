"""Two operator replicas with kopf peering, as the chart's HA install runs them; the active one ``kill -9``-ed
in the middle of a scale-out; the standby must take over and everything settle. And the split brain kopf's
pause leaves alone: an active replica outranked must stop its own loops too (``sdworker.leadership``).

The peering object and the replicas' ``--peering`` flag come from the chart itself (``helm template`` with
``ci/ha-values.yaml``), its CRD from ``charts/sdworker/crds``. Each replica gets its kopf identity from
``POD_ID``, as a pod would from the Downward API, and its priority by default from its start (the
oldest wins). A replica's cloud calls are read from its own ``/metrics`` (``sdworker_cloud_calls_total``,
``sdworker_leader``). Which replica is active is read from the
ClusterKopfPeering's status with kopf's own rule (kopf ``_core/engines/peering.py``,
``process_peering_event``): among the live peers (``lastseen + lifetime`` in the future) the one with the
highest priority runs; peers of equal priority all pause. A replica killed with SIGKILL cannot remove itself
(kopf's ``keepalive`` does so only on a clean exit), so the standby waits out the killed one's lifetime.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sdworker.domain.leadership import PRIORITY_MAX
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.computesim import SimConfig
from sdworker_tools.operator_proc import OperatorProcess
from sdworker_tools.wait import wait_for
from tests.chaos.campaign import Campaign, Row, merge, settle, violations
from tests.chaos.conftest import MakeWorld
from tests.chaos.test_operator_kills import RANK
from tests.chaos.world import World
from tests.integration.test_chart_support import CHART, Helm, find

Json = dict[str, Any]
PEERING_CRD = CHART / "crds" / "kopf.dev_clusterkopfpeerings.yaml"
HA_VALUES = CHART / "ci" / "ha-values.yaml"
NODES = 8


@pytest.fixture(scope="module")
def peering_crd(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/clusterkopfpeerings.kopf.dev"
    )


@pytest.fixture
def ha_install(
    cluster: LocalCluster, peering_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[str]]]:
    """The chart's HA rendering: its ClusterKopfPeering applied, and the operator's ``--peering`` flag."""
    release = f"ha{uuid.uuid4().hex[:6]}"
    docs = Helm(tmp_path_factory.mktemp("helm")).template(values=[HA_VALUES], release=release)
    peering = find(docs, "ClusterKopfPeering")
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = [a for a in args if a.startswith("--peering")]
    assert flags, args
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(peering))
    yield peering["metadata"]["name"], flags
    cluster.kubectl("delete", "clusterkopfpeering", peering["metadata"]["name"], "--ignore-not-found")


def peers(w: World, name: str) -> dict[str, Json]:
    """The live peers in the ClusterKopfPeering's status (kopf's ``Peer``: lastseen + lifetime ahead)."""
    obj: Json = w.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    now = dt.datetime.now(dt.UTC)
    live = {}
    for ident, info in (obj.get("status") or {}).items():
        if not isinstance(info, dict) or "lastseen" not in info:
            continue
        seen = dt.datetime.fromisoformat(str(info["lastseen"]))
        if seen + dt.timedelta(seconds=int(info.get("lifetime", 60))) > now:
            live[ident] = info
    return live


def active(w: World, name: str) -> str | None:
    """The replica kopf lets run: the one live peer of the highest priority; None on a tie (all pause)."""
    live = peers(w, name)
    if not live:
        return None
    top = max(int(i.get("priority", 0)) for i in live.values())
    leaders = [ident for ident, i in live.items() if int(i.get("priority", 0)) == top]
    return leaders[0] if len(leaders) == 1 else None


def scrape(proc: OperatorProcess) -> dict[str, float]:
    """A replica's ``/metrics`` samples (``name{label="value",...}`` -> value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def cloud_calls(samples: dict[str, float]) -> dict[str, float]:
    """The compute API calls a replica made, by method and outcome (``sdworker_cloud_calls_total``)."""
    return {k: v for k, v in samples.items() if k.startswith("sdworker_cloud_calls_total{") and v}


def record(
    campaign: Campaign, scenario: str, w: World, results: dict[str, list[str]], *, started: float, stage: str
) -> None:
    """The scenario's row in the campaign table; without results, where it stopped."""
    note = "" if results else f"stopped at: {stage}"
    campaign.record(Row(scenario, w.all_faults(), results, time.monotonic() - started, note=note))


def describer(w: World, name: str, replicas: dict[str, OperatorProcess]) -> Callable[[], str]:
    """What a failed wait shows: the peering object's live peers and each started replica's log tail."""

    def describe() -> str:
        logs = "\n".join(f"--- {k} ---\n{p.log_tail(30)}" for k, p in replicas.items() if p.proc)
        return f"peers {peers(w, name)}\n{logs}"

    return describe


def test_the_active_replica_killed_during_a_scale_out_the_standby_takes_over(
    make_world: MakeWorld, campaign: Campaign, ha_install: tuple[str, list[str]]
) -> None:
    started = time.monotonic()
    name, flags = ha_install
    w = make_world(
        SimConfig(
            latency="fast",
            block_devices=False,
            seed=21,
            latency_overrides={"disks.insert": 0.6, "instances.attachDisk": 0.4},
        ),
        seed=21,
        operator_args=tuple(flags),
        operator_env={"POD_ID": "replica-a"},
    )
    replicas = {"replica-a": w.operator}
    replicas["replica-b"] = OperatorProcess(
        w.cluster,
        w.operator.logdir.parent / "replica-b-logs",
        w.operator.extra_args,
        verbose=False,
        env={"POD_ID": "replica-b"},
    )
    stage = "starting the standby"
    results: dict[str, list[str]] = {}
    try:
        replicas["replica-b"].start()
        wait_for(
            lambda: set(peers(w, name)) == set(replicas),
            timeout=60,
            what="both replicas in the peering",
            describe=lambda: peers(w, name),
        )

        describe = describer(w, name, replicas)
        stage = "waiting for one active replica"
        leader = wait_for(lambda: active(w, name), timeout=20, what="one active replica", describe=describe)
        stage = "the scale-out half-way"
        w.create_sdworker("peering", replicas=NODES)
        nodes = w.add_nodes(f"{w.label}-{i:02d}" for i in range(NODES))
        wait_for(
            lambda: (
                sum(RANK.get((d.get("status") or {}).get("phase", ""), 0) for d in w.runtimedisks())
                >= 2 * NODES
            ),
            timeout=120,
            what="the scale-out half-way",
            describe=w.describe,
        )
        # Only the active replica works: the standby's gate (sdworker.leadership) holds its own loops too,
        # so it has made no cloud call at all while the other created and attached disks.
        standby = next(k for k in replicas if k != leader)
        stage = "checking the standby made no cloud call"
        on_standby = scrape(replicas[standby])
        assert cloud_calls(on_standby) == {}, cloud_calls(on_standby)
        assert cloud_calls(scrape(replicas[leader]))
        assert on_standby["sdworker_leader"] == 0
        assert scrape(replicas[leader])["sdworker_leader"] == 1
        replicas[leader].kill()
        w.faults["active operator replica kill -9"] += 1
        stage = f"waiting for {standby} to take over"
        wait_for(
            lambda: active(w, name) == standby and scrape(replicas[standby])["sdworker_leader"] == 1,
            timeout=120,
            what=f"{standby} taking over (the peering object's status and its own gate)",
            describe=describe,
        )
        out = settle(w, phase="Attached", timeout=180)
        w.remove_nodes(nodes)
        w.delete_sdworker("peering")
        end = settle(w, phase=None, final=True, timeout=180)
        results = merge(out, end)
    finally:
        for k, proc in replicas.items():
            if k != "replica-a":
                proc.stop()
        record(
            campaign,
            "2 operator replicas (kopf peering), the active one kill -9 mid scale-out",
            w,
            results,
            started=started,
            stage=stage,
        )
    assert violations(results) == []


def test_an_outranked_active_replica_stops_its_own_loops(
    make_world: MakeWorld, campaign: Campaign, ha_install: tuple[str, list[str]]
) -> None:
    """The split brain kopf's pause alone leaves: a replica that was active and is paused (here outranked by
    a replica given the highest ``--peering-priority``) keeps a bound cache, so without the leadership gate
    its resync and orphan sweep (every 3 s here) would go on calling the cloud. It must not make one call."""
    started = time.monotonic()
    name, flags = ha_install
    w = make_world(
        SimConfig(latency="fast", block_devices=False, seed=22),
        seed=22,
        operator_args=tuple(flags),
        operator_env={"POD_ID": "replica-a"},
    )
    first = w.operator
    second = OperatorProcess(
        w.cluster,
        first.logdir.parent / "replica-b-logs",
        [*first.extra_args, f"--peering-priority={PRIORITY_MAX}"],
        verbose=False,
        env={"POD_ID": "replica-b"},
    )
    replicas = {"replica-a": first, "replica-b": second}

    describe = describer(w, name, replicas)
    stage = "replica-a active"
    results: dict[str, list[str]] = {}
    try:
        wait_for(
            lambda: active(w, name) == "replica-a" and scrape(first)["sdworker_leader"] == 1,
            timeout=60,
            what="replica-a active",
            describe=describe,
        )
        stage = "replica-a's scale-out"
        w.create_sdworker("outranked", replicas=NODES)
        nodes = w.add_nodes(f"{w.label}-{i:02d}" for i in range(NODES // 2))
        settle(w, phase="Attached", timeout=180)
        assert cloud_calls(scrape(first))
        stage = "replica-b outranking replica-a"
        second.start()
        w.faults["active replica outranked (--peering-priority)"] += 1
        wait_for(
            lambda: (
                active(w, name) == "replica-b"
                and scrape(first)["sdworker_leader"] == 0
                and scrape(second)["sdworker_leader"] == 1
            ),
            timeout=60,
            what="replica-b active, replica-a standing by",
            describe=describe,
        )
        paused = cloud_calls(scrape(first))
        stage = "replica-b's scale-out"
        nodes += w.add_nodes(f"{w.label}-{i:02d}" for i in range(NODES // 2, NODES))
        out = settle(w, phase="Attached", timeout=180)
        assert cloud_calls(scrape(second))
        assert cloud_calls(scrape(first)) == paused, "the paused replica called the cloud"
        w.remove_nodes(nodes)
        w.delete_sdworker("outranked")
        end = settle(w, phase=None, final=True, timeout=180)
        assert cloud_calls(scrape(first)) == paused, "the paused replica called the cloud"
        results = merge(out, end)
    finally:
        second.stop()
        record(
            campaign,
            "2 operator replicas (kopf peering), the active one outranked: no cloud call after",
            w,
            results,
            started=started,
            stage=stage,
        )
    assert violations(results) == []
