"""The agent's side of its Node, both ways: a Node object read into a ``plan.NodeView``, and a
``plan.NodePatch`` written out as the one guarded JSON patch the admission policy lets the agent send.

``plan`` decides *what* changes on the Node (which runtime labels to set or drop, whether the startup
taint goes); this module decides *how* that is said to the API server: a ``test`` of the resourceVersion
first (a Node changed since it was read is not overwritten: the patch fails with 422 and the next pass
reads it again), label keys as RFC 6901 pointer segments, the taint list rewritten without the startup
taint and with every other taint kept in order. Pure: no I/O, no clock; every rule is a table row in
``tests/unit/test_agent_nodepatch.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdworker.api import constants as c
from sdworker_agent.plan import NodePatch, NodeView, runtime_labels

Json = dict[str, Any]


def node_view(node: Mapping[str, Any]) -> NodeView:
    """The Node as the decisions see it: its name, the startup taint, the runtime labels the agent owns."""
    return NodeView(
        name=node["metadata"]["name"],
        tainted=any(t.get("key") == c.STARTUP_TAINT_KEY for t in _taints(node)),
        runtime_labels=runtime_labels(node["metadata"].get("labels") or {}),
    )


def json_patch(node: Mapping[str, Any], patch: NodePatch) -> list[Json]:
    """The JSON patch (RFC 6902) that applies ``patch`` to ``node``, guarded by its resourceVersion."""
    meta = node["metadata"]
    ops: list[Json] = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}]
    for key in patch.remove_labels:
        ops.append({"op": "remove", "path": f"/metadata/labels/{json_pointer(key)}"})
    if patch.set_labels and not meta.get("labels"):
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    for key in patch.set_labels:
        ops.append(
            {"op": "add", "path": f"/metadata/labels/{json_pointer(key)}", "value": c.RUNTIME_READY_VALUE}
        )
    if patch.remove_taint:
        kept = [t for t in _taints(node) if t.get("key") != c.STARTUP_TAINT_KEY]
        ops.append({"op": "replace", "path": "/spec/taints", "value": kept})
    return ops


def json_pointer(key: str) -> str:
    """A label key as one JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _taints(node: Mapping[str, Any]) -> list[Json]:
    return list((node.get("spec") or {}).get("taints") or [])
