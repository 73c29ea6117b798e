"""The agent's Node patches as a table: a Node as read, what ``plan`` decided, the JSON patch sent.

Every row is one Node the agent can meet (no labels at all, other labels, the startup taint among others,
a label key with ``/`` or ``~``) and the exact patch: a resourceVersion test first, then the label
removals, the label additions, the taint list rewritten without the startup taint only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker_agent import nodepatch
from sdworker_agent.plan import NodePatch

LABEL_A, LABEL_B = naming.runtime_ready_label("sd-a-00000001"), naming.runtime_ready_label("sd-b-00000002")
PTR_A, PTR_B = (f"/metadata/labels/{nodepatch.json_pointer(k)}" for k in (LABEL_A, LABEL_B))
STARTUP = {"key": c.STARTUP_TAINT_KEY, "value": c.STARTUP_TAINT_VALUE, "effect": c.STARTUP_TAINT_EFFECT}
GPU = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
Json = dict[str, Any]


def node(labels: dict[str, str] | None = None, taints: list[Json] | None = None, rv: str = "41") -> Json:
    meta: Json = {"name": "n1", "uid": "u1", "resourceVersion": rv}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta, "spec": {} if taints is None else {"taints": taints}}


def guard(rv: str = "41") -> Json:
    return {"op": "test", "path": "/metadata/resourceVersion", "value": rv}


@dataclass(frozen=True)
class Row:
    id: str
    node: Json
    patch: NodePatch
    expect: list[Json]


ROWS = [
    Row("nothing to change: only the guard", node({"a": "b"}), NodePatch(), [guard()]),
    Row(
        "a first label on a Node without labels creates the map",
        node(None),
        NodePatch(set_labels=(LABEL_A,)),
        [
            guard(),
            {"op": "add", "path": "/metadata/labels", "value": {}},
            {"op": "add", "path": PTR_A, "value": c.RUNTIME_READY_VALUE},
        ],
    ),
    Row(
        "an empty label map is created too (a JSON patch cannot add under a missing parent)",
        node({}),
        NodePatch(set_labels=(LABEL_A,)),
        [
            guard(),
            {"op": "add", "path": "/metadata/labels", "value": {}},
            {"op": "add", "path": PTR_A, "value": c.RUNTIME_READY_VALUE},
        ],
    ),
    Row(
        "labels go into an existing map, which is left as it is",
        node({"kubernetes.io/hostname": "n1"}, rv="7"),
        NodePatch(set_labels=(LABEL_A, LABEL_B)),
        [
            guard("7"),
            {"op": "add", "path": PTR_A, "value": c.RUNTIME_READY_VALUE},
            {"op": "add", "path": PTR_B, "value": c.RUNTIME_READY_VALUE},
        ],
    ),
    Row(
        "removals come before additions",
        node({LABEL_B: "ready"}),
        NodePatch(set_labels=(LABEL_A,), remove_labels=(LABEL_B,)),
        [
            guard(),
            {"op": "remove", "path": PTR_B},
            {"op": "add", "path": PTR_A, "value": c.RUNTIME_READY_VALUE},
        ],
    ),
    Row(
        "the startup taint goes, every other taint stays in its order",
        node({LABEL_A: "ready"}, [GPU, STARTUP, {"key": "x", "effect": "NoExecute"}]),
        NodePatch(remove_taint=True),
        [
            guard(),
            {"op": "replace", "path": "/spec/taints", "value": [GPU, {"key": "x", "effect": "NoExecute"}]},
        ],
    ),
    Row(
        "the last taint going leaves an empty list",
        node({}, [STARTUP]),
        NodePatch(set_labels=(LABEL_A,), remove_taint=True),
        [
            guard(),
            {"op": "add", "path": "/metadata/labels", "value": {}},
            {"op": "add", "path": PTR_A, "value": c.RUNTIME_READY_VALUE},
            {"op": "replace", "path": "/spec/taints", "value": []},
        ],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_json_patch(row: Row) -> None:
    assert nodepatch.json_patch(row.node, row.patch) == row.expect


def test_the_patch_leaves_the_node_it_was_made_from_alone() -> None:
    before = node({}, [GPU, STARTUP])
    ops = nodepatch.json_patch(before, NodePatch(set_labels=(LABEL_A,), remove_taint=True))
    assert before == node({}, [GPU, STARTUP])
    assert ops[-1]["value"] is not before["spec"]["taints"]


@pytest.mark.parametrize(
    ("obj", "tainted", "labels"),
    [
        (node({"a": "b", LABEL_A: "ready"}, [STARTUP, GPU]), True, {LABEL_A: "ready"}),
        (node({LABEL_A: "ready", LABEL_B: "stale"}, [GPU]), False, {LABEL_A: "ready", LABEL_B: "stale"}),
        (node(None), False, {}),
        ({"metadata": {"name": "n1"}, "spec": {"taints": None}}, False, {}),
        ({"metadata": {"name": "n1"}}, False, {}),
    ],
    ids=["tainted, one runtime label", "untainted, two labels", "no labels", "null taints", "no spec"],
)
def test_the_node_view_is_the_taint_and_the_runtime_labels_only(
    obj: Json, tainted: bool, labels: dict[str, str]
) -> None:
    view = nodepatch.node_view(obj)
    assert (view.name, view.tainted, dict(view.runtime_labels)) == ("n1", tainted, labels)


@pytest.mark.parametrize(
    ("key", "pointer"),
    [("sdworker.dev/runtime.x", "sdworker.dev~1runtime.x"), ("a~b/c", "a~0b~1c"), ("plain", "plain")],
)
def test_label_keys_become_json_pointer_segments(key: str, pointer: str) -> None:
    assert nodepatch.json_pointer(key) == pointer
