"""The parser accepts what the CRD accepts, rejects what it rejects, and names the field either way."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker.api import constants as c
from sdworker.api.parse import (
    SpecError,
    flag_matches,
    parse_conditions,
    parse_runtimedisk,
    parse_sdworker,
    parse_sdworker_spec,
)
from sdworker.api.types import (
    ConditionStatus,
    DiskType,
    Phase,
    ResourceRequirements,
    RuntimeMode,
    RuntimeSpec,
    SDWorkerSpec,
    Toleration,
    WarmPool,
    WebUISpec,
)
from tests.unit.invalid_specs import INVALID_SPECS, VALID_VARIANTS, Case, ValidCase, mutated, valid_sdworker
from tests.unit.test_crds import SDWORKER, rules


def test_valid_manifest_parses_to_the_expected_spec() -> None:
    worker = parse_sdworker(valid_sdworker("sd-webui", "default"))
    assert (worker.namespace, worker.name) == ("default", "sd-webui")
    assert worker.spec == SDWorkerSpec(
        replicas=2,
        runtime=RuntimeSpec(
            image="projects/sdworker-demo/global/images/family/sd-runtime",
            disk_type=DiskType.PD_BALANCED,
            disk_size_gb=50,
            mode=RuntimeMode.PER_NODE,
            warm_pool=WarmPool(0),
            prefetch=("models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",),
        ),
        webui=WebUISpec(
            base_image="us-docker.pkg.dev/sdworker-demo/sd/sd-base:cuda12.1-py3.10",
            model="v1-5-pruned-emaonly.safetensors",
            args=("--api",),
            allow_insecure_extension_access=False,
            port=7860,
            auth_secret_name="webui-auth",
        ),
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
        tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),),
        resources=ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
    )


def test_minimal_spec_gets_the_crd_defaults() -> None:
    spec = parse_sdworker_spec(
        {
            "runtime": {"image": "projects/sdworker-demo/global/images/sd-runtime"},
            "webui": {"baseImage": "sd-base"},
            "nodeSelector": {"pool": "gpu"},
        }
    )
    assert spec.replicas == c.DEFAULT_REPLICAS
    assert spec.runtime == RuntimeSpec(image="projects/sdworker-demo/global/images/sd-runtime")
    assert (spec.runtime.disk_type, spec.runtime.disk_size_gb, spec.runtime.mode) == (
        DiskType.PD_BALANCED,
        50,
        RuntimeMode.PER_NODE,
    )
    assert spec.webui == WebUISpec(base_image="sd-base", model=c.DEFAULT_MODEL, port=7860)
    assert spec.tolerations == ()
    assert spec.resources.limits == {"nvidia.com/gpu": "1"}


def test_spec_round_trips_through_to_dict() -> None:
    spec = parse_sdworker(valid_sdworker()).spec
    assert parse_sdworker_spec(spec.to_dict()) == spec


@pytest.mark.parametrize("case", VALID_VARIANTS, ids=[v.id for v in VALID_VARIANTS])
def test_valid_variants_are_accepted(case: ValidCase) -> None:
    worker = parse_sdworker(mutated(case.mutate))
    assert worker.spec.webui.base_image


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[case.id for case in INVALID_SPECS])
def test_invalid_specs_are_rejected_naming_the_field(case: Case) -> None:
    with pytest.raises(SpecError) as caught:
        parse_sdworker(mutated(case.mutate))
    matching = [e for e in caught.value.errors if case.field in e.path and case.message in e.message]
    assert matching, f"no error on {case.field!r} saying {case.message!r}: {caught.value.errors}"


def test_invalid_specs_table_is_large_and_ids_unique() -> None:
    ids = [case.id for case in INVALID_SPECS]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)


def test_every_error_is_reported_at_once() -> None:
    manifest = valid_sdworker()
    manifest["spec"]["replicas"] = -1
    manifest["spec"]["webui"]["port"] = 1
    manifest["spec"]["runtime"]["diskType"] = "floppy"
    with pytest.raises(SpecError) as caught:
        parse_sdworker(manifest)
    assert {e.path for e in caught.value.errors} == {
        "spec.replicas",
        "spec.webui.port",
        "spec.runtime.diskType",
    }
    assert "spec.webui.port: should be greater than or equal to 1024" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (None, "spec"),
        ([], "spec"),
        ({"runtime": "image", "webui": {"baseImage": "x"}, "nodeSelector": {"a": "b"}}, "spec.runtime"),
        (
            {"runtime": {"image": 7}, "webui": {"baseImage": "x"}, "nodeSelector": {"a": "b"}},
            "spec.runtime.image",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": [],
                "nodeSelector": {"a": "b"},
            },
            "spec.webui",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": {"baseImage": "x", "args": "--api"},
                "nodeSelector": {"a": "b"},
            },
            "spec.webui.args",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": {"baseImage": "x", "allowInsecureExtensionAccess": "yes"},
                "nodeSelector": {"a": "b"},
            },
            "spec.webui.allowInsecureExtensionAccess",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": {"baseImage": "x"},
                "nodeSelector": {"a": "b"},
                "tolerations": [None, 3],
            },
            "spec.tolerations[0]",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": {"baseImage": "x"},
                "nodeSelector": {"a": "b"},
                "resources": {"limits": {"nvidia.com/gpu": True}},
            },
            "spec.resources.limits[nvidia.com/gpu]",
        ),
        (
            {
                "runtime": {"image": "projects/abcdef/global/images/x"},
                "webui": {"baseImage": "x"},
                "nodeSelector": {"Bad Key!": "b"},
            },
            "spec.nodeSelector[Bad Key!]",
        ),
        (
            {"runtime": {"image": "projects/abcdef/global/images/x"}, "webui": {"baseImage": "x"}},
            "spec.nodeSelector",
        ),
    ],
    ids=[
        "spec-null",
        "spec-not-object",
        "runtime-not-object",
        "image-not-string",
        "webui-not-object",
        "args-not-list",
        "bool-not-bool",
        "toleration-null",
        "quantity-bool",
        "label-key-invalid",
        "selector-missing",
    ],
)
def test_odd_input_raises_spec_error_never_crashes(raw: Any, path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_sdworker_spec(raw)
    assert path in {e.path for e in caught.value.errors}


def test_unknown_fields_are_ignored_like_the_api_server_prunes_them() -> None:
    manifest = valid_sdworker()
    manifest["spec"]["futureField"] = {"x": 1}
    manifest["spec"]["runtime"]["alsoNew"] = True
    assert parse_sdworker(manifest).spec == parse_sdworker(valid_sdworker()).spec


def test_integral_floats_count_as_integers() -> None:
    manifest = valid_sdworker()
    manifest["spec"]["replicas"] = 3.0
    assert parse_sdworker(manifest).spec.replicas == 3


@pytest.mark.parametrize(
    ("arg", "family", "expected"),
    [
        ("--port", c.OWNED_FLAGS, True),
        ("--port=1", c.OWNED_FLAGS, True),
        ("--po", c.OWNED_FLAGS, True),
        ("--api", c.CREDENTIAL_FLAGS, False),
        ("--api-auth", c.CREDENTIAL_FLAGS, True),
        ("--api-a=x:y", c.CREDENTIAL_FLAGS, True),
        ("--api-log", c.CREDENTIAL_FLAGS, False),
        ("--gradio-auth-path", c.CREDENTIAL_FLAGS, True),
        ("--gradio-img2img-tool", c.CREDENTIAL_FLAGS, False),
        ("--", c.OWNED_FLAGS, False),
        ("--=x", c.OWNED_FLAGS, False),
        ("port", c.OWNED_FLAGS, False),
        ("-p", c.OWNED_FLAGS, False),
        ("8080", c.OWNED_FLAGS, False),
        ("--enable-insecure", (c.INSECURE_EXTENSIONS_FLAG,), True),
        ("--enable-console-prompts", (c.INSECURE_EXTENSIONS_FLAG,), False),
    ],
)
def test_flag_matching_follows_argparse_abbreviations(
    arg: str, family: tuple[str, ...], expected: bool
) -> None:
    assert flag_matches(arg, family) is expected


def test_every_refused_flag_family_is_a_cel_rule_of_the_crd_too() -> None:

    by_message = {" ".join(rule["message"].split()): rule["rule"] for rule in rules(SDWORKER)}
    for family, message in (
        (c.PUBLIC_FLAGS, c.MESSAGE_PUBLIC),
        (c.EXTENSIONS_OFF_FLAGS, c.MESSAGE_EXTENSIONS_OFF),
        (c.OWNED_FLAGS, c.MESSAGE_OWNED_FLAG),
        (c.CREDENTIAL_FLAGS, c.MESSAGE_CREDENTIALS),
    ):
        for flag in family:
            assert f"'{flag}'" in by_message[message], (flag, message)
        for safe in c.PREFIX_SAFE_FLAGS:
            assert f"!= '{safe}'" in by_message[message]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--share", c.MESSAGE_PUBLIC),
        ("--ngrok=token", c.MESSAGE_PUBLIC),
        ("--ngrok-o", c.MESSAGE_PUBLIC),
        ("--disable-all", c.MESSAGE_EXTENSIONS_OFF),
        ("--lora-dir", c.MESSAGE_OWNED_FLAG),
        ("--hypernetwork-dir=/x", c.MESSAGE_OWNED_FLAG),
        ("--api-auth", c.MESSAGE_CREDENTIALS),
    ],
)
def test_each_refused_flag_gets_its_own_message(arg: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_sdworker(mutated(lambda m: m["spec"]["webui"].__setitem__("args", [arg])))
    assert [e.message for e in caught.value.errors] == [message]


def _runtimedisk(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "gke-node-1-sd-runtime-1a2b3c4d"},
        "spec": {
            "nodeName": "gke-node-1",
            "zone": "us-central1-a",
            "instance": "gke-node-1",
            "project": "sdworker-demo",
            "image": "projects/sdworker-demo/global/images/sd-runtime",
            "imageDigest": "sha256:" + "ab" * 32,
            "runtimeId": "sd-runtime-1a2b3c4d",
            "diskName": "sdw-00000000-sd-runtime-1a2b3c4d",
            "deviceName": "sdw-sd-runtime-1a2b3c4d",
            "diskType": "pd-ssd",
            "diskSizeGb": 50,
            "mode": "PerNode",
            "mountPath": "/mnt/sdworker/sd-runtime-1a2b3c4d",
            "prefetch": ["models/x"],
        },
        "status": status,
    }


def test_runtimedisk_round_trips() -> None:
    raw = _runtimedisk(
        phase="Ready",
        devicePath="/dev/sdb",
        timings={"nodeCreated": "2025-01-01T00:00:00Z", "verified": "2025-01-01T00:01:30+00:00"},
        prefetch={"bytes": 4_000_000_000, "seconds": 8, "throughputMBps": 500.5},
    )
    disk = parse_runtimedisk(raw)
    assert disk.status.phase is Phase.READY
    assert disk.spec.disk_type is DiskType.PD_SSD
    assert disk.status.timings.verified is not None
    assert (disk.status.timings.verified - disk.status.timings.node_created).total_seconds() == 90  # type: ignore[operator]
    assert disk.status.prefetch is not None
    assert disk.status.prefetch.bytes == 4_000_000_000
    assert disk.spec.to_dict() == raw["spec"]
    assert (
        parse_runtimedisk({"metadata": raw["metadata"], "spec": raw["spec"], "status": disk.status.to_dict()})
        == disk
    )


def test_runtimedisk_without_status_is_pending_and_deletion_is_seen() -> None:
    raw = _runtimedisk()
    del raw["status"]
    raw["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    disk = parse_runtimedisk(raw)
    assert disk.status.phase is Phase.PENDING
    assert disk.deleting


@pytest.mark.parametrize(
    ("status", "path"),
    [
        ({"phase": "Exploded"}, "status.phase"),
        ({"timings": {"attached": "yesterday"}}, "status.timings.attached"),
        ({"timings": {"durationsSeconds": {"attach": "slow"}}}, "status.timings.durationsSeconds[attach]"),
    ],
)
def test_runtimedisk_bad_status_names_the_field(status: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_runtimedisk(_runtimedisk(**status))
    assert path in {e.path for e in caught.value.errors}


def test_runtimedisk_missing_spec_fields_are_all_reported() -> None:
    raw = _runtimedisk()
    del raw["spec"]["zone"], raw["spec"]["diskName"]
    with pytest.raises(SpecError) as caught:
        parse_runtimedisk(raw)
    assert {e.path for e in caught.value.errors} == {"spec.zone", "spec.diskName"}


def test_conditions_parse_leniently() -> None:
    raw = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "R",
            "message": "m",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        },
        {"type": "Broken", "status": "Maybe", "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": "NoTime", "status": "True"},
        "garbage",
    ]
    parsed = parse_conditions(raw)
    assert [(cond.type, cond.status) for cond in parsed] == [("Ready", ConditionStatus.TRUE)]
    assert parse_conditions(None) == ()


def _error_paths(manifest: dict[str, Any]) -> set[str]:
    with pytest.raises(SpecError) as caught:
        parse_sdworker(manifest)
    return {e.path for e in caught.value.errors}


def test_a_blocking_error_stops_the_cel_rules_as_in_the_api_server() -> None:
    """apiextensions-apiserver (customresource/strategy.go, hasBlockingErr) skips CEL after a wrong type,
    a missing field, an enum or a size violation, and runs it after a bound or pattern violation."""
    shared_pool = valid_sdworker()
    shared_pool["spec"]["runtime"].update(mode="SharedReadOnly", warmPool={"size": 2})
    wrong_type = valid_sdworker()
    wrong_type["spec"] = {**shared_pool["spec"], "replicas": "two"}
    assert _error_paths(wrong_type) == {"spec.replicas"}
    out_of_bounds = valid_sdworker()
    out_of_bounds["spec"] = {**shared_pool["spec"], "replicas": -1}
    assert _error_paths(out_of_bounds) == {"spec.replicas", "spec.runtime.warmPool.size"}


def test_null_fields_read_as_absent_and_take_the_crd_default() -> None:
    manifest = valid_sdworker()
    manifest["spec"]["replicas"] = None
    manifest["spec"]["webui"]["port"] = None
    manifest["spec"]["runtime"]["warmPool"] = None
    spec = parse_sdworker(manifest).spec
    assert (spec.replicas, spec.webui.port, spec.runtime.warm_pool) == (1, 7860, WarmPool(0))
    manifest["spec"]["nodeSelector"] = {"pool": None}
    with pytest.raises(SpecError) as caught:
        parse_sdworker(manifest)
    assert [str(e) for e in caught.value.errors] == [
        'spec.nodeSelector[pool]: must be of type string: "null"'
    ]


def test_a_pattern_end_is_the_end_of_the_text_as_in_go() -> None:
    """Python's ``$`` also matches before a final newline; Go's, which the API server uses, does not."""
    manifest = valid_sdworker()
    manifest["spec"]["runtime"]["prefetch"] = []
    manifest["spec"]["webui"]["authSecretRef"] = {"name": "webui-auth\n"}
    assert _error_paths(manifest) == {"spec.webui.authSecretRef.name"}


def test_runtimedisk_conditions_stay_lenient() -> None:
    raw = _runtimedisk(
        phase="Ready",
        conditions=[{"type": "Ready", "status": "Maybe"}, {"status": "True"}, "garbage"],
    )
    assert parse_runtimedisk(raw).status.conditions == ()


def test_runtimedisk_timings_must_be_rfc3339() -> None:
    with pytest.raises(SpecError) as caught:
        parse_runtimedisk(_runtimedisk(timings={"mounted": "2025-01-01T00:00:00"}))
    assert [str(e) for e in caught.value.errors] == [
        'status.timings.mounted: must be of type date-time: "2025-01-01T00:00:00"'
    ]
