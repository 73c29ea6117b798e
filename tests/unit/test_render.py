"""The rendered workload starts fast, stays read-only, keeps credentials off the command line, is owned."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sdworker.api import constants as c
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import SDWorkerSpec, Toleration
from sdworker.domain import render
from tests.unit.invalid_specs import both, mutated, set_

UID = "0b8e4c1e-0000-4000-8000-000000000001"
RID = "sd-runtime-1a2b3c4d"


def spec_of(*mutations: Any) -> SDWorkerSpec:
    return parse_sdworker(mutated(both(*mutations))).spec


def deployment(spec: SDWorkerSpec | None = None) -> dict[str, Any]:
    return render.render_deployment("default", "sd-webui", UID, spec or spec_of(), RID)


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (only,) = dep["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def pod_spec(dep: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = dep["spec"]["template"]["spec"]
    return result


def test_command_and_args_are_exact() -> None:
    ctr = container(deployment())
    assert ctr["command"] == ["/runtime/venv/bin/python", "/runtime/stable-diffusion-webui/launch.py"]
    assert ctr["args"] == [
        "--skip-prepare-environment",
        "--skip-install",
        "--skip-torch-cuda-test",
        "--skip-python-version-check",
        "--skip-version-check",
        "--no-download-sd-model",
        "--no-hashing",
        "--data-dir",
        "/data",
        "--ckpt-dir",
        "/runtime/models/Stable-diffusion",
        "--ckpt",
        "/runtime/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "--listen",
        "--port",
        "7860",
        "--gradio-auth-path",
        "/secrets/webui-auth/gradio-auth",
        "--api",
        "--xformers",
    ]
    assert ctr["image"] == "us-docker.pkg.dev/sdworker-demo/sd/sd-base:cuda12.1-py3.10"


def test_model_and_port_come_from_the_spec() -> None:
    dep = deployment(spec_of(set_("spec.webui.model", "sd-v1-4.ckpt"), set_("spec.webui.port", 8080)))
    args = container(dep)["args"]
    assert args[args.index("--ckpt") + 1] == "/runtime/models/Stable-diffusion/sd-v1-4.ckpt"
    assert args[args.index("--port") + 1] == "8080"
    assert container(dep)["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_runtime_is_a_read_only_host_path_and_data_an_empty_dir() -> None:
    dep = deployment()
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
    assert volumes["runtime"]["hostPath"] == {"path": f"/mnt/sdworker/{RID}", "type": "Directory"}
    assert mounts["runtime"]["mountPath"] == "/runtime"
    assert mounts["runtime"]["readOnly"] is True
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert mounts["data"]["mountPath"] == "/data"
    assert not mounts["data"].get("readOnly", False)


@pytest.mark.parametrize(
    ("allow", "args", "expect_flag"),
    [
        (False, ["--api"], False),
        (True, ["--api"], True),
        (True, ["--enable-insecure-extension-access"], True),
    ],
)
def test_insecure_extension_access_only_when_asked(allow: bool, args: list[str], expect_flag: bool) -> None:
    spec = spec_of(set_("spec.webui.allowInsecureExtensionAccess", allow), set_("spec.webui.args", args))
    rendered = container(deployment(spec))["args"]
    assert (c.INSECURE_EXTENSIONS_FLAG in rendered) is expect_flag
    assert rendered.count(c.INSECURE_EXTENSIONS_FLAG) <= 1 + args.count(c.INSECURE_EXTENSIONS_FLAG)


def test_credentials_never_reach_the_command_line() -> None:
    dep = deployment()
    ctr = container(dep)
    argv = [*ctr["command"], *ctr["args"]]
    assert not any(a.startswith(("--gradio-auth=", "--api-auth")) or a == "--gradio-auth" for a in argv)
    assert ctr["args"][ctr["args"].index("--gradio-auth-path") + 1] == "/secrets/webui-auth/gradio-auth"
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert volumes["webui-auth"]["secret"] == {
        "secretName": "webui-auth",
        "defaultMode": 0o400,
        "items": [{"key": "gradio-auth", "path": "gradio-auth"}],
    }
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    assert mounts["webui-auth"] == {
        "name": "webui-auth",
        "mountPath": "/secrets/webui-auth",
        "readOnly": True,
    }
    (api_env,) = [e for e in ctr["env"] if "valueFrom" in e]
    assert api_env["valueFrom"]["secretKeyRef"] == {"name": "webui-auth", "key": "api-auth", "optional": True}
    assert all("value" not in e or ":" not in e["value"] for e in ctr["env"])


def test_without_auth_there_is_no_secret_anywhere() -> None:
    dep = deployment(spec_of(lambda m: m["spec"]["webui"].pop("authSecretRef")))
    ctr = container(dep)
    assert "--gradio-auth-path" not in ctr["args"]
    assert [v["name"] for v in pod_spec(dep)["volumes"]] == ["runtime", "data"]
    assert all("valueFrom" not in e for e in ctr["env"])


def test_runtime_label_is_preferred_not_required_so_the_autoscaler_can_scale_up() -> None:
    spec = pod_spec(deployment())
    # Required: only the user's selector (the startup taint does the gating).
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in spec["affinity"]["nodeAffinity"]
    (preferred,) = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    (expr,) = preferred["preference"]["matchExpressions"]
    assert (expr["key"], expr["operator"], expr["values"]) == (f"sdworker.dev/runtime.{RID}", "In", ["ready"])


def test_tolerations_come_from_the_spec_but_never_the_startup_taint() -> None:
    spec = spec_of()
    sneaky = (
        Toleration(key=c.STARTUP_TAINT_KEY, operator="Exists"),
        Toleration(operator="Exists"),
        Toleration(operator="Exists", effect="NoExecute"),
    )
    # The parser rejects these; render drops them anyway in case an unparsed spec ever reaches it.
    spec = dataclasses.replace(spec, tolerations=spec.tolerations + sneaky)
    assert pod_spec(deployment(spec))["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute"},
    ]


@pytest.mark.parametrize(
    ("toleration", "tolerates"),
    [
        (Toleration(key=c.STARTUP_TAINT_KEY, operator="Exists"), True),
        (Toleration(key=c.STARTUP_TAINT_KEY, operator="Equal", value="pending", effect="NoSchedule"), True),
        (Toleration(key=c.STARTUP_TAINT_KEY, operator="Equal", value="other"), False),
        (Toleration(key=c.STARTUP_TAINT_KEY, operator="Exists", effect="NoExecute"), False),
        (Toleration(operator="Exists"), True),
        (Toleration(operator="Exists", effect="NoSchedule"), True),
        (Toleration(operator="Exists", effect="PreferNoSchedule"), False),
        (Toleration(key="nvidia.com/gpu", operator="Exists"), False),
    ],
)
def test_tolerates_startup_taint(toleration: Toleration, tolerates: bool) -> None:
    assert render.tolerates_startup_taint(toleration) is tolerates


def test_resources_and_pod_hardening() -> None:
    dep = deployment(
        spec_of(set_("spec.resources", {"limits": {"nvidia.com/gpu": 2}, "requests": {"cpu": "4"}}))
    )
    ctr = container(dep)
    assert ctr["resources"] == {"limits": {"nvidia.com/gpu": "2"}, "requests": {"cpu": "4"}}
    assert ctr["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec(dep)["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("args", "startup", "readiness", "liveness"),
    [
        ([], "/internal/ping", "/internal/ping", "/internal/ping"),
        (["--api"], "/internal/ping", "/sdapi/v1/sd-models", "/internal/ping"),
        (["--nowebui"], "/sdapi/v1/sd-models", "/sdapi/v1/sd-models", "/sdapi/v1/sd-models"),
    ],
)
def test_probes(args: list[str], startup: str, readiness: str, liveness: str) -> None:
    ctr = container(deployment(spec_of(set_("spec.webui.args", args))))
    paths = {p: ctr[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"startupProbe": startup, "readinessProbe": readiness, "livenessProbe": liveness}
    assert all(ctr[p]["httpGet"]["port"] == "http" for p in paths)
    # Model loading can take minutes; the startup probe must allow it before liveness applies.
    assert ctr["startupProbe"]["periodSeconds"] * ctr["startupProbe"]["failureThreshold"] >= 300


def test_every_child_is_owned_and_labelled() -> None:
    children = render.render_children("default", "sd-webui", UID, spec_of(), RID)
    expected_labels = {
        "app.kubernetes.io/name": "stable-diffusion-webui",
        "app.kubernetes.io/instance": "sd-webui",
        "app.kubernetes.io/managed-by": "sdworker",
        "sdworker.dev/sdworker": "sd-webui",
    }
    for child in children:
        meta = child["metadata"]
        assert (meta["name"], meta["namespace"]) == ("sd-webui", "default")
        assert meta["labels"] == expected_labels
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "sdworker.dev/v1alpha1",
                "kind": "SDWorker",
                "name": "sd-webui",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    selector = {"app.kubernetes.io/instance": "sd-webui", "sdworker.dev/sdworker": "sd-webui"}
    assert children.deployment["spec"]["selector"] == {"matchLabels": selector}
    assert children.deployment["spec"]["template"]["metadata"]["labels"] == expected_labels
    assert children.service["spec"]["selector"] == selector
    assert children.service["spec"]["ports"] == [
        {"name": "http", "port": 7860, "targetPort": "http", "protocol": "TCP"}
    ]
    assert children.pdb["apiVersion"] == "policy/v1"
    assert children.pdb["spec"]["maxUnavailable"] == 1
    assert children.pdb["spec"]["selector"] == {"matchLabels": selector}
    assert (
        render.label_selector("sd-webui")
        == "app.kubernetes.io/instance=sd-webui,sdworker.dev/sdworker=sd-webui"
    )


def test_replicas_come_from_the_spec() -> None:
    assert deployment(spec_of(set_("spec.replicas", 7)))["spec"]["replicas"] == 7


def hash_of(dep: dict[str, Any]) -> str:
    value: str = dep["spec"]["template"]["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
    return value


def test_rendering_is_deterministic_and_the_hash_follows_the_template() -> None:
    first, again = deployment(), deployment()
    assert first == again
    annotations = first["spec"]["template"]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_RUNTIME_ID] == RID
    base_hash = annotations[c.ANNOTATION_SPEC_HASH]
    other_runtime = render.render_deployment("default", "sd-webui", UID, spec_of(), "sd-runtime-99999999")
    other_args = deployment(spec_of(set_("spec.webui.args", ["--api"])))
    scaled = deployment(spec_of(set_("spec.replicas", 5)))
    assert hash_of(other_runtime) != base_hash
    assert hash_of(other_args) != base_hash
    assert hash_of(scaled) == base_hash  # scaling must not roll the pods
