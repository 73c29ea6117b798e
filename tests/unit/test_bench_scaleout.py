"""The scale-out benchmark's pure parts: the scenario matrix and the targets it reports against."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from bench import scaleout_targets
from bench.scaleout_scenarios import FULL, QUICK, SCENARIOS, Scenario, sdworker_manifest, warm_pool_max

from sdworker.api.parse import parse_sdworker


def test_the_matrix_covers_the_issue_and_every_set_names_real_scenarios() -> None:
    assert set(QUICK) <= set(SCENARIOS)
    assert set(FULL) <= set(SCENARIOS)
    for n in (1, 10, 100):
        for mode in ("pernode", "shared", "prepro"):
            sc = SCENARIOS[f"{mode}-{n}"]
            assert (sc.nodes, sc.mode, sc.hosts) == (n, mode, "loop")
            assert sc.reference is (mode != "shared")  # the published DaemonSet has no shared mode
    # A warm pool is at most 20 disks per zone (the CRD): the largest pool scenario claims all 20 at once.
    assert [n for n in (1, 10, 20, 100) if f"pool-{n}" in SCENARIOS] == [1, 10, 20]
    assert "pool-20" in FULL
    assert SCENARIOS["pool-10"].warm_pool == 10
    assert SCENARIOS["pernode-10"].warm_pool == 0
    assert "pernode-1000" in FULL
    prepro = SCENARIOS["prepro-10"]
    assert (prepro.join, prepro.reference, prepro.hosts) == ("autoscaler", True, "loop")
    assert "prepro-10" in QUICK


def test_only_the_pre_provisioned_scenario_is_driven_by_the_autoscaler() -> None:
    with pytest.raises(ValueError, match="autoscaler"):
        Scenario("x", 10, "prepro", "burst")
    with pytest.raises(ValueError, match="autoscaler"):
        Scenario("x", 10, "pernode", "autoscaler")


def test_the_1000_node_scenarios_run_on_the_simulated_mount_layer_and_say_so() -> None:
    big = [sc for sc in SCENARIOS.values() if sc.nodes >= 1000]
    assert big
    for sc in big:
        assert sc.hosts == "simulated"
        assert not sc.reference
        assert "SIMULATED mount layer" in sc.label
    assert "SIMULATED" not in SCENARIOS["pernode-100"].label


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": "perNode"}, "mode"),
        ({"join": "trickle"}, "join"),
        ({"hosts": "vm"}, "hosts"),
        ({"nodes": 0}, "nodes"),
    ],
)
def test_a_bad_scenario_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(Scenario("x", 1, "pernode"), **change)


def _entry(name: str, **summary: Any) -> dict[str, Any]:
    sc = SCENARIOS[name]
    base = {
        "ready": sc.nodes,
        "expected": sc.nodes,
        "ready_p50_s": None,
        "floor_p50_s": None,
        "overhead_p50_s": None,
        "overhead_p99_s": None,
        "makespan_s": None,
        "quota_floor_s": None,
    }
    return {
        "scenario": {**sc.__dict__, "label": sc.label},
        "latency": "realistic",
        "sdworker": {"summary": {**base, **summary}, "operator": {"peak_rss_mb": 240.0}},
    }


def test_targets_say_goal_measured_and_met() -> None:
    results = [
        _entry("pernode-100", overhead_p50_s=0.25, overhead_p99_s=1.5),
        _entry("pernode-1000", makespan_s=88.0, quota_floor_s=80.0),
        _entry("pernode-1", ready_p50_s=39.0, floor_p50_s=37.5),
        {**_entry("pool-10"), "reference": {}, "ratio_p50": 3.5},
    ]
    got = {t.goal: t for t in scaleout_targets.targets(results)}
    assert len(got) == 5
    overhead = got["overhead p50 <= 0.3 s, p99 <= 1 s at 100 nodes"]
    assert (overhead.met, overhead.measured) == (False, "pernode-100: p50 0.25 s, p99 1.50 s")
    quota = got["1000 nodes within 1.15x of the quota floor"]
    assert quota.met is True
    assert "1.10x" in quota.measured
    assert got["operator peak RSS <= 250 MB at 1000 nodes"].met is True
    assert got["warm pool node -> Ready >= 5x faster than the reference's disk reuse"].met is False
    fresh = got["fresh disk within 1.05x of the simulated cloud floor"]
    assert fresh.met is True
    assert "1.04x" in fresh.measured
    table = scaleout_targets.table(results)
    assert table.count("\n") == 6
    assert "**no**" in table


def test_a_target_no_scenario_measured_is_not_reported_as_met() -> None:
    got = scaleout_targets.targets([_entry("pernode-10", ready_p50_s=3.0, floor_p50_s=0.2)])
    assert all(t.met is not True for t in got)
    assert {t.measured for t in got if t.met is None} >= {"not measured in this run"}


def test_an_unfinished_1000_node_run_does_not_meet_the_quota_target() -> None:
    entry = _entry("pernode-1000", makespan_s=85.0, quota_floor_s=80.0, ready=990)
    quota = scaleout_targets.targets([entry])[1]
    assert quota.met is False
    assert "990/1000 Ready" in quota.measured
    assert scaleout_targets.quota_ratio({"makespan_s": 10.0, "quota_floor_s": 0.0}) is None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_applies_an_sdworker_the_operator_accepts(name: str) -> None:
    # The operator's parser checks the CRD's schema and rules as the API server does (tests/unit/test_parse*):
    # a scenario the API server would refuse fails here, not an hour into `make bench`.
    sc = SCENARIOS[name]
    sdw = parse_sdworker(sdworker_manifest(sc.nodes, sc.mode, sc.warm_pool))
    assert sdw.spec.replicas == sc.nodes


def test_a_warm_pool_over_the_crd_maximum_is_refused_when_the_scenario_is_defined() -> None:
    limit = warm_pool_max()
    assert Scenario("ok", limit, "pool").warm_pool == limit
    with pytest.raises(ValueError, match=r"warmPool\.size"):
        Scenario("too-big", limit + 1, "pool")
