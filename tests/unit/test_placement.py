"""Which runtime disks each node gets: the decision table behind every RuntimeDisk."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import pytest

from sdworker.api import naming
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import DiskType, ResolvedImage, RuntimeMode, SDWorker
from sdworker.domain.placement import (
    REASON_NODE_DELETING,
    REASON_UNSUPPORTED_PROVIDER_ID,
    GceInstance,
    NodeInfo,
    diff_runtimedisks,
    parse_provider_id,
    place,
    selector_matches,
)
from sdworker.domain.pool import pool_targets
from tests.unit.invalid_specs import both, mutated, set_

T4 = {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
L4 = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
IMAGE_A = "projects/sdworker-demo/global/images/family/sd-runtime"
IMAGE_B = "projects/sdworker-demo/global/images/sdxl-runtime"
RESOLVED = {
    IMAGE_A: ResolvedImage("projects/sdworker-demo/global/images/sd-runtime-20250101", "sha256:aaa"),
    IMAGE_B: ResolvedImage(IMAGE_B, "sha256:bbb"),
}
RID_A = naming.runtime_id(RESOLVED[IMAGE_A].image)
RID_B = naming.runtime_id(IMAGE_B)


def node(
    name: str, labels: Mapping[str, str] = T4, *, zone: str = "us-central1-a", deleting: bool = False
) -> NodeInfo:
    return NodeInfo(name, dict(labels), f"gce://sdworker-demo/{zone}/{name}", deleting)


def worker(name: str, namespace: str = "default", **fields: object) -> SDWorker:
    mutations = [set_(f"spec.{path.replace('__', '.')}", value) for path, value in fields.items()]
    return parse_sdworker(mutated(both(*mutations), name=name, namespace=namespace))


class Row(NamedTuple):
    id: str
    nodes: list[NodeInfo]
    workers: list[SDWorker]
    expected: dict[str, set[str]]
    """node name -> runtime ids it must get (nodes left out get none)."""


def without_selector(w: SDWorker) -> SDWorker:
    """An SDWorker the parser would reject (the CRD requires a selector key); placement must still be safe."""
    return dataclasses.replace(w, spec=dataclasses.replace(w.spec, node_selector={}))


TABLE = [
    Row("selector-matches", [node("n1")], [worker("a")], {"n1": {RID_A}}),
    Row("selector-does-not-match", [node("n1", L4)], [worker("a")], {}),
    Row("one-of-two-nodes-matches", [node("n1"), node("n2", L4)], [worker("a")], {"n1": {RID_A}}),
    Row(
        "selector-needs-every-key",
        [node("n1"), node("n2", {**T4, "pool": "gpu"})],
        [worker("a", nodeSelector={**T4, "pool": "gpu"})],
        {"n2": {RID_A}},
    ),
    Row("same-runtime-shares-a-disk", [node("n1")], [worker("a"), worker("b", "other")], {"n1": {RID_A}}),
    Row(
        "two-runtimes-two-disks",
        [node("n1")],
        [worker("a"), worker("b", runtime__image=IMAGE_B)],
        {"n1": {RID_A, RID_B}},
    ),
    Row(
        "runtimes-follow-selectors",
        [node("t4"), node("l4", L4)],
        [worker("a"), worker("b", runtime__image=IMAGE_B, nodeSelector=L4)],
        {"t4": {RID_A}, "l4": {RID_B}},
    ),
    Row("deleting-node-gets-nothing", [node("n1", deleting=True)], [worker("a")], {}),
    Row("no-workers-no-disks", [node("n1")], [], {}),
    Row("empty-selector-matches-nothing", [node("n1"), node("n2", {})], [without_selector(worker("a"))], {}),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_placement_table(row: Row) -> None:
    placement = place(row.nodes, row.workers, RESOLVED)
    got = {n.name: set(placement.for_node(n.name)) for n in row.nodes if placement.for_node(n.name)}
    assert got == row.expected
    for name, spec in placement.desired.items():
        assert name == naming.runtimedisk_name(spec.node_name, spec.runtime_id)


def test_desired_spec_is_complete() -> None:
    placement = place([node("gke-c-pool-1", zone="europe-west4-b")], [worker("a")], RESOLVED)
    (spec,) = placement.desired.values()
    assert spec == dataclasses.replace(
        spec,
        node_name="gke-c-pool-1",
        zone="europe-west4-b",
        instance="gke-c-pool-1",
        project="sdworker-demo",
        image="projects/sdworker-demo/global/images/sd-runtime-20250101",
        image_digest="sha256:aaa",
        runtime_id=RID_A,
        disk_name=naming.disk_name("gke-c-pool-1", RID_A),
        device_name=naming.device_name(RID_A),
        disk_type=DiskType.PD_BALANCED,
        disk_size_gb=50,
        mode=RuntimeMode.PER_NODE,
        mount_path=f"/mnt/sdworker/{RID_A}",
        prefetch=("models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",),
    )
    assert placement.skipped == ()
    assert placement.conflicts == ()


def test_shared_mode_uses_one_disk_per_zone() -> None:
    shared = worker("a", runtime__mode="SharedReadOnly")
    placement = place(
        [node("n1"), node("n2"), node("n3", zone="us-central1-b")], [shared], RESOLVED, cluster="c1"
    )
    disks = {spec.node_name: spec.disk_name for spec in placement.desired.values()}
    assert disks["n1"] == disks["n2"] == naming.shared_disk_name("us-central1-a", RID_A, cluster="c1")
    assert disks["n3"] == naming.shared_disk_name("us-central1-b", RID_A, cluster="c1")


def test_conflicting_disk_parameters_merge_deterministically_and_are_reported() -> None:
    a = worker(
        "a", "ns2", runtime__diskSizeGb=100, runtime__diskType="pd-ssd", runtime__prefetch=["m/x", "m/y"]
    )
    b = worker(
        "b", "ns1", runtime__diskSizeGb=60, runtime__diskType="hyperdisk-ml", runtime__prefetch=["m/a", "m/x"]
    )
    for order in ([a, b], [b, a]):
        placement = place([node("n1")], order, RESOLVED)
        (spec,) = placement.desired.values()
        # ns1/b sorts first: its type wins; the size is the largest; prefetch is the sorted union.
        assert spec.disk_type is DiskType.HYPERDISK_ML
        assert spec.disk_size_gb == 100
        assert spec.prefetch == ("m/a", "m/x", "m/y")
        assert [(cf.field, cf.workers, cf.values, cf.chosen) for cf in placement.conflicts] == [
            ("diskSizeGb", ("ns1/b", "ns2/a"), ("60", "100"), "100"),
            ("diskType", ("ns1/b", "ns2/a"), ("hyperdisk-ml", "pd-ssd"), "hyperdisk-ml"),
        ]


def test_conflicts_are_reported_once_across_nodes() -> None:
    workers = [worker("a"), worker("b", runtime__diskSizeGb=80)]
    placement = place([node("n1"), node("n2"), node("n3")], workers, RESOLVED)
    assert [cf.field for cf in placement.conflicts] == ["diskSizeGb"]


@pytest.mark.parametrize(
    "provider_id",
    [
        "",
        "kind://docker/kind/node",
        "gce://",
        "gce://sdworker-demo/us-central1-a",
        "aws:///us-east-1a/i-0123",
    ],
)
def test_nodes_without_a_gce_provider_id_are_skipped_and_reported(provider_id: str) -> None:
    bad = NodeInfo("n1", T4, provider_id)
    placement = place([bad, node("n2")], [worker("a")], RESOLVED)
    assert set(placement.desired) == {naming.runtimedisk_name("n2", RID_A)}
    assert [(s.node, s.reason) for s in placement.skipped] == [("n1", REASON_UNSUPPORTED_PROVIDER_ID)]


def test_non_matching_nodes_are_not_reported() -> None:
    placement = place([NodeInfo("cpu", {"pool": "cpu"}, "")], [worker("a")], RESOLVED)
    assert placement.skipped == ()


def test_deleting_node_is_reported() -> None:
    placement = place([node("n1", deleting=True)], [worker("a")], RESOLVED)
    assert [(s.node, s.reason) for s in placement.skipped] == [("n1", REASON_NODE_DELETING)]


def test_unresolved_images_wait_without_blocking_others() -> None:
    workers = [worker("a"), worker("b", runtime__image="projects/sdworker-demo/global/images/not-yet")]
    placement = place([node("n1")], workers, RESOLVED)
    assert set(placement.for_node("n1")) == {RID_A}
    assert placement.unresolved == ("default/b",)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, False),
        ({}, {"a": "b"}, False),
        ({"a": "b"}, {"a": "b", "c": "d"}, True),
        ({"a": "b"}, {"a": "c"}, False),
        ({"a": "b", "c": "d"}, {"a": "b"}, False),
        ({"a": ""}, {}, False),
        ({"a": ""}, {"a": ""}, True),
    ],
)
def test_selector_matching(selector: dict[str, str], labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [
        (
            "gce://sdworker-demo/us-central1-a/gke-c-pool-1",
            GceInstance("sdworker-demo", "us-central1-a", "gke-c-pool-1"),
        ),
        ("gce://example.com:proj/europe-west4-b/vm", GceInstance("example.com:proj", "europe-west4-b", "vm")),
        ("gce://sdworker-demo/us-central1-a/gke-c-pool-1/extra", None),
        ("gce://sdworker-demo/us-central1/vm", None),
        ("gce://sdworker-demo/us-central1-a/VM", None),
    ],
)
def test_parse_provider_id(provider_id: str, expected: GceInstance | None) -> None:
    assert parse_provider_id(provider_id) == expected


@pytest.mark.parametrize(
    ("desired", "existing", "to_create", "to_delete"),
    [
        ([], [], [], []),
        (["a", "b"], [], ["a", "b"], []),
        ([], ["a"], [], ["a"]),
        (["b", "a", "c"], ["c", "d"], ["a", "b"], ["d"]),
    ],
)
def test_diff(desired: list[str], existing: list[str], to_create: list[str], to_delete: list[str]) -> None:
    assert diff_runtimedisks(desired, existing) == (to_create, to_delete)


# --- issue 14 ------------------------------------------------------------------------------------------


def test_an_unresolved_image_keeps_the_served_runtime_disks() -> None:
    """A lookup that fails (CloudUnavailable) leaves the runtime the SDWorker served on its nodes; the
    SDWorker still counts as unresolved, so the caller deletes nothing on this pass."""
    w = worker("sd")
    served = {w.key: RESOLVED[IMAGE_A]}
    plan = place([node("n1")], [w], {}, served=served)
    assert plan.unresolved == ("default/sd",)
    assert set(plan.for_node("n1")) == {RID_A}
    assert plan.desired == place([node("n1")], [w], RESOLVED).desired
    # Nothing served before, nothing resolved now: no disk for a runtime that does not exist.
    assert place([node("n1")], [w], {}).desired == {}


def test_a_family_move_keeps_the_served_runtime_next_to_the_new_one() -> None:
    w = worker("sd")
    moved = {IMAGE_A: ResolvedImage("projects/sdworker-demo/global/images/sd-runtime-20250202", "sha256:ccc")}
    before = place([node("n1")], [w], RESOLVED).desired
    after = place([node("n1")], [w], moved, served={w.key: RESOLVED[IMAGE_A]}).desired
    _, to_delete = diff_runtimedisks(after, before)
    assert to_delete == [], f"the served runtime's disk would be deleted under its pods: {to_delete}"
    assert sorted(s.runtime_id for s in after.values()) == sorted(
        naming.runtime_id(i.image) for i in (RESOLVED[IMAGE_A], moved[IMAGE_A])
    )


def test_a_pinned_worker_stays_on_its_runtime_when_the_family_moves() -> None:
    w = worker("sd")
    moved = {IMAGE_A: ResolvedImage("projects/sdworker-demo/global/images/sd-runtime-20250202", "sha256:ccc")}
    before = place([node("n1")], [w], RESOLVED).desired
    after = place(
        [node("n1")], [w], moved, served={w.key: RESOLVED[IMAGE_A]}, pinned={w.key: RESOLVED[IMAGE_A]}
    )
    assert set(after.desired) == set(before)
    assert after.unresolved == ()


def test_warm_pools_follow_the_runtime_rolled_to_and_a_pin() -> None:
    w = worker("sd", runtime__warmPool={"size": 2})
    moved = {IMAGE_A: ResolvedImage("projects/sdworker-demo/global/images/sd-runtime-20250202", "sha256:ccc")}
    served = {w.key: RESOLVED[IMAGE_A]}
    rolling = place([node("n1")], [w], moved, served=served).desired
    assert {k.runtime_id for k in pool_targets(rolling, [w], moved)} == {
        naming.runtime_id(moved[IMAGE_A].image)
    }
    pinned = place([node("n1")], [w], moved, served=served, pinned=served).desired
    assert {k.runtime_id for k in pool_targets(pinned, [w], moved, served)} == {
        naming.runtime_id(RESOLVED[IMAGE_A].image)
    }
