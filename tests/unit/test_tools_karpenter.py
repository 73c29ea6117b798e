"""The rig's Karpenter configuration agrees with the operator and says what the launcher sets.

The startup taint Karpenter must ignore when provisioning is the operator's (``constants``), in the
rig's NodePool and in the users' example; the instance types offer the GPU shapes the examples ask
for; ``rig_config`` applies the run's boot time and overrides and rejects nonsense by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker.api import constants
from sdworker_tools.karpenter import CONFIG_DIR, rig_config

REPO = Path(__file__).resolve().parents[2]
STARTUP_TAINT = {
    "key": constants.STARTUP_TAINT_KEY,
    "value": constants.STARTUP_TAINT_VALUE,
    "effect": constants.STARTUP_TAINT_EFFECT,
}


def nodepools(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "NodePool"]


def test_rig_and_example_nodepools_carry_the_operator_startup_taint() -> None:
    example = [
        d for d in yaml.safe_load_all((REPO / "examples" / "karpenter-nodepool.yaml").read_text()) if d
    ]
    for pool in nodepools(rig_config(boot_s=0)) + nodepools(example):
        spec = pool["spec"]["template"]["spec"]
        assert spec["startupTaints"] == [STARTUP_TAINT]
        assert STARTUP_TAINT not in spec.get("taints", [])
        assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert int(pool["spec"]["limits"][constants.GPU_RESOURCE]) > 0


def test_instance_types_offer_the_gpu_shapes_the_examples_use() -> None:
    types = json.loads((CONFIG_DIR / "instance-types.json").read_text())
    shapes = set()
    for it in types:
        for offering in it["offerings"]:
            reqs = {r["key"]: r["values"] for r in offering["Requirements"]}
            shapes.add(
                (reqs["cloud.google.com/gke-accelerator"][0], int(it["resources"][constants.GPU_RESOURCE]))
            )
            assert reqs["topology.kubernetes.io/zone"][0].startswith("us-central1-")
    selector = yaml.safe_load((REPO / "examples" / "sdworker.yaml").read_text())["spec"]["nodeSelector"]
    assert (selector["cloud.google.com/gke-accelerator"], 1) in shapes
    assert {("nvidia-l4", 1), ("nvidia-l4", 2)} <= shapes


def test_rig_config_applies_boot_time_and_overrides() -> None:
    docs = rig_config(boot_s=30, consolidate_after="0s", gpu_limit=4)
    (node_class,) = [d for d in docs if d["kind"] == "KWOKNodeClass"]
    (pool,) = nodepools(docs)
    assert node_class["spec"]["nodeRegistrationDelay"] == "30s"
    assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] == node_class["metadata"]["name"]
    assert pool["spec"]["disruption"]["consolidateAfter"] == "0s"
    assert pool["spec"]["limits"][constants.GPU_RESOURCE] == "4"
    assert rig_config(boot_s=0.5)[0]["spec"]["nodeRegistrationDelay"] == "0.5s"


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"boot_s": -1}, "boot_s"), ({"boot_s": 0, "gpu_limit": 0}, "gpu_limit")]
)
def test_rig_config_rejects_bad_values_by_name(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        rig_config(**kwargs)
