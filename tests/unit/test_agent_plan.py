"""The agent's decisions as a table: given RuntimeDisks, mounts, the Node and in-flight work, what it does.

Every row is one situation a node can be in (a fresh disk, a restart mid-mount, a reboot, a deletion, a
double mount, a stale label...) and the complete plan the agent must compute for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from sdworker.api import naming
from sdworker.api.constants import MOUNT_ROOT, RUNTIME_READY_VALUE
from sdworker.api.types import Phase
from sdworker_agent import plan
from sdworker_agent.mountinfo import Mount
from sdworker_agent.plan import (
    Abort,
    BringUp,
    DiskView,
    Fail,
    NodePatch,
    NodeView,
    Observation,
    ReleaseFinalizer,
    Unmount,
)

HOST = "/host"
MOUNT_DIR = f"{HOST}{MOUNT_ROOT}"
RT_A, RT_B = "sd-a-00000001", "sd-b-00000002"
LABEL_A, LABEL_B = naming.runtime_ready_label(RT_A), naming.runtime_ready_label(RT_B)
DEV_A, DEV_B = (8, 16), (8, 32)


def disk(name: str = "a", phase: Phase = Phase.ATTACHED, **kw: object) -> DiskView:
    runtime = {"a": RT_A, "b": RT_B}.get(name, f"sd-{name}-00000000")
    fields: dict[str, object] = {
        "name": name,
        "runtime_id": runtime,
        "phase": phase,
        "target": f"{MOUNT_DIR}/{runtime}",
        "holds_finalizer": True,
        "device": {"a": DEV_A, "b": DEV_B}.get(name),
    }
    fields.update(kw)
    return DiskView(**fields)  # type: ignore[arg-type]


def mounted(d: DiskView, device: tuple[int, int] | None = None, mount_id: int = 100) -> Mount:
    major, minor = device or d.device or (7, 7)
    return Mount(mount_id, 1, major, minor, "/", d.target, ("ro",), (), "ext4", "/dev/x", ("ro",))


def node(tainted: bool = True, **labels: str) -> NodeView:
    return NodeView("n1", tainted, {k.replace("__", "/"): v for k, v in labels.items()})


def labelled(*keys: str, tainted: bool = False) -> NodeView:
    return NodeView("n1", tainted, dict.fromkeys(keys, RUNTIME_READY_VALUE))


@dataclass(frozen=True)
class Row:
    id: str
    disks: tuple[DiskView, ...]
    mounts: tuple[Mount, ...] = ()
    node: NodeView | None = field(default_factory=node)
    busy: frozenset[str] = frozenset()
    synced: bool = True
    expect: plan.Plan = field(default_factory=plan.Plan)


A, B = disk("a"), disk("b")
A_READY, B_READY = disk("a", Phase.READY), disk("b", Phase.READY)
A_DEL = disk("a", Phase.READY, deleting=True)

ROWS = [
    Row("no disks yet: keep the taint, do nothing", (), expect=plan.Plan()),
    Row(
        "a fresh disk is brought up",
        (A,),
        expect=plan.Plan(bring_ups=(BringUp("a", "Attached"),), waiting=("a (Attached)",)),
    ),
    Row(
        "disks the operator is still making are left alone",
        (disk("a", Phase.PENDING), disk("b", Phase.ATTACHING)),
        expect=plan.Plan(waiting=("a (Pending)", "b (Attaching)")),
    ),
    Row(
        "an in-flight bring-up is not started twice",
        (disk("a", Phase.MOUNTING),),
        busy=frozenset({"a"}),
        expect=plan.Plan(waiting=("a (Mounting)",)),
    ),
    Row(
        "restart mid-mount: Mounting and already mounted resumes (the worker adopts the mount)",
        (disk("a", Phase.MOUNTING),),
        mounts=(mounted(A),),
        expect=plan.Plan(bring_ups=(BringUp("a", "ResumeMounting"),), waiting=("a (Mounting)",)),
    ),
    Row(
        "ready and mounted: label it and lift the taint",
        (A_READY,),
        mounts=(mounted(A_READY),),
        expect=plan.Plan(node=NodePatch(set_labels=(LABEL_A,), remove_taint=True), serving=("a",)),
    ),
    Row(
        "one of two ready: label that one, keep the taint",
        (A_READY, B),
        mounts=(mounted(A_READY),),
        expect=plan.Plan(
            node=NodePatch(set_labels=(LABEL_A,)),
            bring_ups=(BringUp("b", "Attached"),),
            serving=("a",),
            waiting=("b (Attached)",),
        ),
    ),
    Row(
        "both ready: both labels, no taint",
        (A_READY, B_READY),
        mounts=(mounted(A_READY), mounted(B_READY, mount_id=101)),
        expect=plan.Plan(
            node=NodePatch(set_labels=(LABEL_A, LABEL_B), remove_taint=True), serving=("a", "b")
        ),
    ),
    Row(
        "already done: nothing to do",
        (A_READY,),
        mounts=(mounted(A_READY),),
        node=labelled(LABEL_A),
        expect=plan.Plan(serving=("a",)),
    ),
    Row(
        "a failed disk keeps the node tainted and is unmounted",
        (A_READY, disk("b", Phase.FAILED)),
        mounts=(mounted(A_READY), mounted(B, mount_id=101)),
        node=labelled(LABEL_A, tainted=True),
        expect=plan.Plan(
            unmounts=(Unmount(B.target, "Failed", "b"),), serving=("a",), waiting=("b (Failed)",)
        ),
    ),
    Row(
        "a failed disk that is not mounted is left for a human",
        (disk("a", Phase.FAILED),),
        expect=plan.Plan(waiting=("a (Failed)",)),
    ),
    Row(
        "reboot: Ready but not mounted is mounted again and loses its label meanwhile",
        (A_READY,),
        node=labelled(LABEL_A),
        expect=plan.Plan(
            node=NodePatch(remove_labels=(LABEL_A,)),
            bring_ups=(BringUp("a", "Remount"),),
            waiting=("a (Ready)",),
        ),
    ),
    Row(
        "Ready but another device at the target: remount (the worker swaps it)",
        (A_READY,),
        mounts=(mounted(A_READY, device=(9, 9)),),
        node=labelled(LABEL_A),
        expect=plan.Plan(
            node=NodePatch(remove_labels=(LABEL_A,)),
            bring_ups=(BringUp("a", "Remount"),),
            waiting=("a (Ready)",),
        ),
    ),
    Row(
        "Ready but its device link vanished: not serving",
        (replace(A_READY, device=None),),
        mounts=(mounted(A_READY),),
        node=labelled(LABEL_A),
        expect=plan.Plan(
            node=NodePatch(remove_labels=(LABEL_A,)),
            bring_ups=(BringUp("a", "Remount"),),
            waiting=("a (Ready)",),
        ),
    ),
    Row(
        "a double mount is peeled before anything else",
        (disk("a", Phase.MOUNTING),),
        mounts=(mounted(A), mounted(A, mount_id=101)),
        expect=plan.Plan(unmounts=(Unmount(A.target, "Stacked", "a"),), waiting=("a (Mounting)",)),
    ),
    Row(
        "deletion: label off first, unmount in the same pass (node patch runs first)",
        (A_DEL,),
        mounts=(mounted(A_DEL),),
        node=labelled(LABEL_A),
        expect=plan.Plan(
            node=NodePatch(remove_labels=(LABEL_A,)), unmounts=(Unmount(A.target, "Deleted", "a"),)
        ),
    ),
    Row(
        "deletion: once unmounted, the finalizer goes",
        (A_DEL,),
        node=labelled(),
        expect=plan.Plan(releases=(ReleaseFinalizer("a"),)),
    ),
    Row(
        "deletion: finalizer already gone (the operator released it): nothing left",
        (replace(A_DEL, holds_finalizer=False),),
        expect=plan.Plan(),
    ),
    Row(
        "deletion during a bring-up: stop it, unmount later",
        (A_DEL,),
        mounts=(mounted(A_DEL),),
        busy=frozenset({"a"}),
        expect=plan.Plan(aborts=(Abort("a"),)),
    ),
    Row(
        "a bring-up whose RuntimeDisk vanished is stopped",
        (),
        busy=frozenset({"gone"}),
        expect=plan.Plan(aborts=(Abort("gone"),)),
    ),
    Row(
        "deleting one of two keeps the other serving; the taint stays off",
        (A_DEL, B_READY),
        mounts=(mounted(B_READY),),
        node=labelled(LABEL_A, LABEL_B),
        expect=plan.Plan(
            node=NodePatch(remove_labels=(LABEL_A,)), releases=(ReleaseFinalizer("a"),), serving=("b",)
        ),
    ),
    Row(
        "only deleting disks: never lift the taint",
        (A_DEL,),
        node=node(),
        expect=plan.Plan(releases=(ReleaseFinalizer("a"),)),
    ),
    Row(
        "operator teardown phases unmount too",
        (disk("a", Phase.DETACHING),),
        mounts=(mounted(A),),
        expect=plan.Plan(unmounts=(Unmount(A.target, "Deleted", "a"),)),
    ),
    Row(
        "an orphan mount under the mount root is unmounted",
        (),
        mounts=(mounted(disk("x", target=f"{MOUNT_DIR}/old-runtime-1234")),),
        expect=plan.Plan(unmounts=(Unmount(f"{MOUNT_DIR}/old-runtime-1234", "Orphan"),)),
    ),
    Row(
        "mounts outside the mount root are never touched",
        (),
        mounts=(
            mounted(disk("x", target="/host/var/lib/other")),
            mounted(disk("y", target="/mnt/sdworker/z")),
        ),
        expect=plan.Plan(),
    ),
    Row(
        "before the first full list, no orphans and no node changes",
        (A_READY,),
        mounts=(mounted(A_READY), mounted(disk("x", target=f"{MOUNT_DIR}/old-runtime-1234"))),
        node=labelled(LABEL_B, tainted=True),
        synced=False,
        expect=plan.Plan(serving=("a",)),
    ),
    Row(
        "a stale runtime label with no RuntimeDisk is removed",
        (A_READY,),
        mounts=(mounted(A_READY),),
        node=labelled(LABEL_A, LABEL_B),
        expect=plan.Plan(node=NodePatch(remove_labels=(LABEL_B,)), serving=("a",)),
    ),
    Row(
        "a label with another value is corrected",
        (A_READY,),
        mounts=(mounted(A_READY),),
        node=NodeView("n1", False, {LABEL_A: "stale"}),
        expect=plan.Plan(node=NodePatch(set_labels=(LABEL_A,)), serving=("a",)),
    ),
    Row(
        "no Node object: mount work goes on, the node is not patched",
        (A_READY, B),
        mounts=(mounted(A_READY),),
        node=None,
        expect=plan.Plan(bring_ups=(BringUp("b", "Attached"),), serving=("a",), waiting=("b (Attached)",)),
    ),
    Row(
        "an unsafe mount path fails the disk instead of mounting",
        (disk("a", target="", target_problem="spec.mountPath '/etc' must be /mnt/sdworker/<runtime-id>"),),
        expect=plan.Plan(
            failures=(
                Fail("a", "InvalidMountPath", "spec.mountPath '/etc' must be /mnt/sdworker/<runtime-id>"),
            ),
            waiting=("a (Attached)",),
        ),
    ),
    Row(
        "a busy Ready disk is not serving until its bring-up ends, and its label is left alone",
        (A_READY,),
        mounts=(mounted(A_READY),),
        busy=frozenset({"a"}),
        node=labelled(LABEL_A, tainted=True),
        expect=plan.Plan(waiting=("a (Ready)",)),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_plan(row: Row) -> None:
    obs = Observation(
        disks=row.disks,
        mounts=row.mounts,
        mount_dir=MOUNT_DIR,
        node=row.node,
        busy=row.busy,
        synced=row.synced,
    )
    assert plan.plan(obs) == row.expect


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_plan_ignores_the_order_disks_are_listed_in(row: Row) -> None:
    forward = Observation(row.disks, row.mounts, MOUNT_DIR, row.node, row.busy, row.synced)
    backward = replace(forward, disks=tuple(reversed(row.disks)))
    assert plan.plan(forward) == plan.plan(backward)


def test_an_idle_plan_says_so() -> None:
    assert plan.Plan(serving=("a",)).idle
    assert not plan.Plan(node=NodePatch(remove_taint=True)).idle


@pytest.mark.parametrize(
    ("mount_path", "target"),
    [
        (f"{MOUNT_ROOT}/{RT_A}", f"/host{MOUNT_ROOT}/{RT_A}"),
        (naming.mount_path(RT_B), f"/host{MOUNT_ROOT}/{RT_B}"),
    ],
)
def test_target_path_of_a_good_mount_path(mount_path: str, target: str) -> None:
    assert plan.target_path("/host/", mount_path, MOUNT_ROOT) == (target, "")


@pytest.mark.parametrize(
    "mount_path",
    [
        "/etc",
        "/usr/bin",
        f"{MOUNT_ROOT}",
        f"{MOUNT_ROOT}/",
        f"{MOUNT_ROOT}/a/b",
        f"{MOUNT_ROOT}/../../etc",
        f"{MOUNT_ROOT}/./{RT_A}",
        f"mnt/sdworker/{RT_A}",
        f"{MOUNT_ROOT}/Upper-Case",
        f"{MOUNT_ROOT}/..",
        "",
    ],
)
def test_target_path_refuses_anything_outside_the_mount_root(mount_path: str) -> None:
    target, problem = plan.target_path("/host", mount_path, MOUNT_ROOT)
    assert target == ""
    assert "spec.mountPath" in problem


def test_only_runtime_labels_are_ours() -> None:
    labels = {LABEL_A: "ready", "kubernetes.io/hostname": "n1", "sdworker.dev/node": "x"}
    assert plan.runtime_labels(labels) == {LABEL_A: "ready"}
