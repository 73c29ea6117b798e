"""A node name of any valid length (up to 253 characters) gives its RuntimeDisks a valid ``sdworker.dev/node``
label that the node's agent selects by, while ``spec.nodeName`` keeps the full name for exact lookups.

Through the real producers: ``domain.placement`` decides and builds the RuntimeDisk object the operator
creates, ``sdworker_agent.config.Config.selector`` is the label selector the agent watches with.
"""

from __future__ import annotations

from typing import Any

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import ResolvedImage
from sdworker.domain import placement
from sdworker_agent.config import Config
from tests.unit.test_naming import LABEL_VALUE, LONG_NODE
from tests.unit.test_placement import IMAGE_A, T4, worker

# What the cloud resolves the worker's image family to (a digest the API server's schema accepts).
RESOLVED = {IMAGE_A: ResolvedImage("projects/sdworker-demo/global/images/sd-runtime-1", "sha256:" + "a" * 64)}


def runtimedisk_for(node: str) -> dict[str, Any]:
    info = placement.NodeInfo(node, T4, "gce://sdworker-demo/us-central1-a/gpu-1")
    plan = placement.place([info], [worker("a")], RESOLVED)
    [(name, spec)] = plan.desired.items()
    return placement.runtimedisk_manifest(name, node, "uid-1", spec.to_dict())


def selects(selector: str, labels: dict[str, str]) -> bool:
    key, _, value = selector.partition("=")
    return labels.get(key) == value


def test_a_253_character_node_gets_a_valid_label_its_agent_selects() -> None:
    rd = runtimedisk_for(LONG_NODE)
    meta = rd["metadata"]
    value = meta["labels"][c.LABEL_NODE]
    assert len(value) <= 63
    assert LABEL_VALUE.fullmatch(value)
    assert rd["spec"]["nodeName"] == LONG_NODE
    assert rd["spec"]["image"] == RESOLVED[IMAGE_A].image
    assert len(meta["name"]) <= naming.SUBDOMAIN_MAX
    assert selects(Config(LONG_NODE).selector, meta["labels"])
    # Another long node sharing the first 200 characters does not select it.
    assert not selects(Config(LONG_NODE[:-1] + "e").selector, meta["labels"])


def test_a_short_node_name_is_its_own_label() -> None:
    rd = runtimedisk_for("gke-gpu-pool-1-abc12")
    meta = rd["metadata"]
    assert meta["labels"][c.LABEL_NODE] == "gke-gpu-pool-1-abc12"
    assert selects(Config("gke-gpu-pool-1-abc12").selector, meta["labels"])
