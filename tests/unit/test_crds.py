"""The CRD YAML is well-formed, documented everywhere, and agrees with the Python API it mirrors.

Kubernetes reads the CRDs and the operator reads ``sdworker.api``; these tests keep the two in lockstep
(patterns, limits, enums, defaults, messages, field names), and keep ``kubectl explain`` useful by requiring a
description on every field. Whether the API server accepts the CRDs is tested against a real one in
tests/integration.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdworker.api import constants as c
from sdworker.api.parse import parse_sdworker
from sdworker.api.schema import crd_schema
from sdworker.api.types import TIMING_FIELDS, DiskType, Phase, RuntimeMode
from tests.unit.invalid_specs import valid_sdworker
from tests.unit.test_chart_crds import _load as load_generator

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
        ("spec.runtime.diskType", "enum", list(c.DISK_TYPES)),
        ("spec.runtime.diskType", "default", c.DEFAULT_DISK_TYPE),
        ("spec.runtime.diskSizeGb", "default", c.DEFAULT_DISK_SIZE_GB),
        ("spec.runtime.mode", "enum", list(c.MODES)),
        ("spec.runtime.mode", "default", c.DEFAULT_MODE),
        ("spec.webui.model", "default", c.DEFAULT_MODEL),
        ("spec.webui.port", "default", c.DEFAULT_PORT),
        ("spec.webui.allowInsecureExtensionAccess", "default", False),
        ("spec.resources", "default", {"limits": {c.GPU_RESOURCE: 1}}),
    ],
)
def test_crd_defaults_agree_with_constants(field: str, key: str, expected: object) -> None:
    """Python builds typed objects with these defaults; the parsers take theirs from the CRD itself."""
    assert at(SDWORKER, field)[key] == expected


@pytest.mark.parametrize(
    ("crd", "plural"), [(SDWORKER, c.SDWORKER_PLURAL), (RUNTIMEDISK, c.RUNTIMEDISK_PLURAL)]
)
def test_the_operator_validates_with_the_crds_own_schema(crd: dict[str, Any], plural: str) -> None:
    """The package's generated copy (what the wheel ships) is the schema in crds/, whole."""
    assert crd_schema(plural) == schema(crd)


def test_a_stale_operator_schema_is_reported_and_regenerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editing crds/ without regenerating fails the tests (tests/unit/test_chart_crds.py runs drift())."""
    sync = load_generator()
    for name in ("SCHEMAS", "TARGET"):
        copy = tmp_path / name
        shutil.copytree(getattr(sync, name), copy)
        monkeypatch.setattr(sync, name, copy)
    monkeypatch.setattr(sync, "DASHBOARD", tmp_path / "sdworker.json")
    stale = tmp_path / "SCHEMAS" / "sdworker.dev_sdworkers.json"
    stale.write_text(stale.read_text().replace('"maximum": 1000', '"maximum": 999'))
    assert str(stale) in sync.drift()
    assert sync.main([]) == 0
    assert sync.drift() == []
    assert json.loads(stale.read_text())["openAPIV3Schema"] == schema(SDWORKER)


def test_typed_enums_are_the_crds() -> None:
    """The parsers build DiskType, RuntimeMode and Phase from values the schema let through."""
    for crd, prefix in ((SDWORKER, "spec.runtime"), (RUNTIMEDISK, "spec")):
        assert at(crd, f"{prefix}.diskType")["enum"] == [t.value for t in DiskType]
        assert at(crd, f"{prefix}.mode")["enum"] == [m.value for m in RuntimeMode]


def test_every_cel_rule_is_written_out_in_python() -> None:
    """Python cannot run CEL, so the parsers implement each rule by hand with the rule's own message."""
    implemented = {value for name, value in vars(c).items() if "MESSAGE_" in name}
    for crd in (SDWORKER, RUNTIMEDISK):
        for rule in rules(crd):
            if "oldSelf" in rule["rule"]:
                continue  # a transition rule (immutability): only the API server sees the old object
            assert " ".join(rule["message"].split()) in implemented, rule["rule"]


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
