"""The CRD YAML is well-formed, documented everywhere, and agrees with the Python API it mirrors.

Kubernetes reads the CRDs and the operator reads ``sdworker.api``; these tests keep the two in lockstep
(patterns, limits, enums, defaults, messages, field names), and keep ``kubectl explain`` useful by requiring a
description on every field. Whether the API server accepts the CRDs is tested against a real one in
tests/integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker.api import constants as c
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import TIMING_FIELDS, Phase
from tests.unit.invalid_specs import valid_sdworker

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
Schema = dict[str, Any]


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRDS / name).read_text())
    return doc


SDWORKER = load("sdworker.dev_sdworkers.yaml")
RUNTIMEDISK = load("sdworker.dev_runtimedisks.yaml")


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only  # type: ignore[no-any-return]


def schema(crd: dict[str, Any]) -> Schema:
    return version(crd)["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def at(crd: dict[str, Any], dotted: str) -> Schema:
    node = schema(crd)
    for key in dotted.split("."):
        node = node["items"] if key == "[]" else node["properties"][key]
    return node


def walk(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def rules(crd: dict[str, Any]) -> list[dict[str, str]]:
    return [rule for _, node in walk(schema(crd), "") for rule in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("crd", [SDWORKER, RUNTIMEDISK], ids=["sdworkers", "runtimedisks"])
def test_every_field_is_described(crd: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in walk(schema(crd), "")
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []


@pytest.mark.parametrize("crd", [SDWORKER, RUNTIMEDISK], ids=["sdworkers", "runtimedisks"])
def test_every_rule_has_a_message_and_every_list_a_bound(crd: dict[str, Any]) -> None:
    assert all(rule["message"].strip() for rule in rules(crd))
    unbounded = [
        path
        for path, node in walk(schema(crd), "")
        if node.get("type") == "array" and "maxItems" not in node and not path.endswith("conditions")
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    ("crd", "plural", "kind", "scope", "short"),
    [
        (SDWORKER, "sdworkers", "SDWorker", "Namespaced", "sdw"),
        (RUNTIMEDISK, "runtimedisks", "RuntimeDisk", "Cluster", "rd"),
    ],
)
def test_names_and_scope(crd: dict[str, Any], plural: str, kind: str, scope: str, short: str) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.{c.GROUP}"
    assert crd["spec"]["group"] == c.GROUP
    assert crd["spec"]["scope"] == scope
    assert crd["spec"]["names"]["plural"] == plural
    assert crd["spec"]["names"]["kind"] == kind
    assert crd["spec"]["names"]["shortNames"] == [short]
    assert version(crd)["name"] == c.VERSION
    assert version(crd)["served"]
    assert version(crd)["storage"]
    assert "status" in version(crd)["subresources"]


def test_sdworker_scale_subresource_and_columns() -> None:
    assert version(SDWORKER)["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {col["name"]: col["jsonPath"] for col in version(SDWORKER)["additionalPrinterColumns"]}
    assert columns == {
        "Ready": ".status.readyReplicas",
        "Replicas": ".spec.replicas",
        "Nodes Ready": ".status.nodes.ready",
        "Runtime": ".spec.runtime.image",
        "Age": ".metadata.creationTimestamp",
    }


def test_runtimedisk_columns_and_immutable_spec() -> None:
    columns = {col["name"]: col["jsonPath"] for col in version(RUNTIMEDISK)["additionalPrinterColumns"]}
    assert columns == {
        "Node": ".spec.nodeName",
        "Zone": ".spec.zone",
        "Phase": ".status.phase",
        "Disk": ".spec.diskName",
        "Age": ".metadata.creationTimestamp",
    }
    (rule,) = at(RUNTIMEDISK, "spec")["x-kubernetes-validations"]
    assert rule["rule"] == "self == oldSelf"
    assert "immutable" in rule["message"]


@pytest.mark.parametrize(
    ("field", "key", "expected"),
    [
        ("spec.replicas", "default", c.DEFAULT_REPLICAS),
        ("spec.replicas", "minimum", c.REPLICAS_MIN),
        ("spec.replicas", "maximum", c.REPLICAS_MAX),
        ("spec.runtime.image", "pattern", c.RUNTIME_IMAGE_PATTERN),
        ("spec.runtime.image", "maxLength", c.IMAGE_MAX_LENGTH),
        ("spec.runtime.diskType", "enum", list(c.DISK_TYPES)),
        ("spec.runtime.diskType", "default", c.DEFAULT_DISK_TYPE),
        ("spec.runtime.diskSizeGb", "default", c.DEFAULT_DISK_SIZE_GB),
        ("spec.runtime.diskSizeGb", "maximum", c.DISK_SIZE_MAX_GB),
        ("spec.runtime.mode", "enum", list(c.MODES)),
        ("spec.runtime.mode", "default", c.DEFAULT_MODE),
        ("spec.runtime.warmPool.size", "maximum", c.WARM_POOL_MAX),
        ("spec.runtime.prefetch", "maxItems", c.PREFETCH_MAX_ITEMS),
        ("spec.runtime.prefetch.[]", "maxLength", c.PREFETCH_MAX_LENGTH),
        ("spec.webui.baseImage", "pattern", c.BASE_IMAGE_PATTERN),
        ("spec.webui.baseImage", "maxLength", c.BASE_IMAGE_MAX_LENGTH),
        ("spec.webui.model", "default", c.DEFAULT_MODEL),
        ("spec.webui.model", "maxLength", c.MODEL_MAX_LENGTH),
        ("spec.webui.args", "maxItems", c.ARGS_MAX_ITEMS),
        ("spec.webui.args.[]", "maxLength", c.ARG_MAX_LENGTH),
        ("spec.webui.port", "default", c.DEFAULT_PORT),
        ("spec.webui.port", "minimum", c.PORT_MIN),
        ("spec.webui.port", "maximum", c.PORT_MAX),
        ("spec.webui.allowInsecureExtensionAccess", "default", False),
        ("spec.webui.authSecretRef.name", "pattern", c.DNS1123_SUBDOMAIN_PATTERN),
        ("spec.webui.authSecretRef.name", "maxLength", c.SECRET_NAME_MAX_LENGTH),
        ("spec.nodeSelector", "minProperties", 1),
        ("spec.nodeSelector", "maxProperties", c.NODE_SELECTOR_MAX_PROPERTIES),
        ("spec.tolerations", "maxItems", c.TOLERATIONS_MAX_ITEMS),
        ("spec.tolerations.[].operator", "enum", list(c.TOLERATION_OPERATORS)),
        ("spec.tolerations.[].effect", "enum", list(c.TAINT_EFFECTS)),
        ("spec.resources", "default", {"limits": {c.GPU_RESOURCE: 1}}),
        ("spec.resources.limits", "maxProperties", c.RESOURCE_MAP_MAX_PROPERTIES),
        ("spec.resources.requests", "maxProperties", c.RESOURCE_MAP_MAX_PROPERTIES),
    ],
)
def test_crd_agrees_with_constants(field: str, key: str, expected: object) -> None:
    assert at(SDWORKER, field)[key] == expected


def test_map_value_patterns_agree_with_constants() -> None:
    assert at(SDWORKER, "spec.nodeSelector")["additionalProperties"]["pattern"] == c.LABEL_VALUE_PATTERN
    for part in ("requests", "limits"):
        values = at(SDWORKER, f"spec.resources.{part}")["additionalProperties"]
        assert values["pattern"] == c.QUANTITY_PATTERN
        assert values["x-kubernetes-int-or-string"] is True


def test_cel_rules_carry_the_same_messages_and_flags_as_the_parser() -> None:
    messages = {" ".join(rule["message"].split()) for rule in rules(SDWORKER)}
    expected = {value for name, value in vars(c).items() if name.startswith("MESSAGE_")}
    assert expected <= messages
    by_message = {" ".join(rule["message"].split()): rule["rule"] for rule in rules(SDWORKER)}
    for flag in c.OWNED_FLAGS:
        assert f"'{flag}'" in by_message[c.MESSAGE_OWNED_FLAG]
    for flag in c.CREDENTIAL_FLAGS:
        assert f"'{flag}'" in by_message[c.MESSAGE_CREDENTIALS]
    assert f"'{c.INSECURE_EXTENSIONS_FLAG}'" in by_message[c.MESSAGE_INSECURE]
    for safe in c.PREFIX_SAFE_FLAGS:
        assert f"!= '{safe}'" in by_message[c.MESSAGE_OWNED_FLAG]
        assert f"!= '{safe}'" in by_message[c.MESSAGE_CREDENTIALS]
    assert f"'{c.STARTUP_TAINT_KEY}'" in by_message[c.MESSAGE_TOLERATION_STARTUP]
    assert c.MODEL_PATTERN in by_message[c.MESSAGE_MODEL]
    assert by_message[c.MESSAGE_DISK_TOO_SMALL] == f"self >= {c.DISK_SIZE_MIN_GB}"


def test_crd_fields_match_what_the_operator_writes() -> None:
    worker = parse_sdworker(valid_sdworker())
    assert set(at(SDWORKER, "spec")["properties"]) == set(worker.spec.to_dict())
    assert set(at(SDWORKER, "status")["properties"]) == {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "selector",
        "nodes",
        "runtime",
        "coldStart",
        "rollout",
        "conditions",
    }
    assert set(at(SDWORKER, "status.rollout")["properties"]) == {
        "target",
        "paused",
        "targetNodes",
        "servedNodes",
        "updatedReplicas",
    }
    assert set(at(RUNTIMEDISK, "status.timings")["properties"]) == {*TIMING_FIELDS, "durationsSeconds"}
    assert at(RUNTIMEDISK, "status.phase")["enum"] == [phase.value for phase in Phase]
    assert at(RUNTIMEDISK, "spec.runtimeId")["maxLength"] == 40
    for crd in (SDWORKER, RUNTIMEDISK):
        conditions = at(crd, "status.conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_example_is_the_valid_manifest_of_the_tests() -> None:
    example = yaml.safe_load((ROOT / "examples" / "sdworker.yaml").read_text())
    assert example == valid_sdworker("sd-webui", "default")
    assert parse_sdworker(example).spec.webui.auth_secret_name == "webui-auth"
    secret = yaml.safe_load((ROOT / "examples" / "webui-auth-secret.yaml").read_text())
    assert secret["metadata"]["name"] == "webui-auth"
    assert set(secret["stringData"]) == {c.AUTH_KEY_GRADIO, c.AUTH_KEY_API}
