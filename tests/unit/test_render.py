"""The rendered workload starts fast, stays read-only, keeps credentials off the command line, is owned.

The SD pod contract (issue 12; sdworker.runtime_layout) is checked here as render facts: the user, the
read-only root, the working directory, the environment, the Secret's files, /data's bounds, the model
folder flags and the probes. That webui then really starts under them is the pod runner's test.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from sdworker import runtime_layout as layout
from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import SDWorkerSpec, Toleration
from sdworker.domain import render
from tests.unit.invalid_specs import both, mutated, set_

REPO = Path(__file__).resolve().parents[2]
UID = "0b8e4c1e-0000-4000-8000-000000000001"
RID = "sd-runtime-1a2b3c4d"
_GPU = "nvidia.com/gpu"


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
        # webui v1.10.1: --lora-dir comes from extensions-builtin/Lora/preload.py, the others from
        # modules/cmd_args.py; with --data-dir /data their defaults would be empty folders under /data.
        "--lora-dir",
        "/runtime/models/Lora",
        "--vae-dir",
        "/runtime/models/VAE",
        "--embeddings-dir",
        "/runtime/models/embeddings",
        "--hypernetwork-dir",
        "/runtime/models/hypernetworks",
        "--ckpt",
        "/runtime/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "--listen",
        "--port",
        "7860",
        "--gradio-auth-path",
        "/secrets/webui-auth/gradio-auth",
        "--api",
    ]
    assert ctr["image"] == "us-docker.pkg.dev/sdworker-demo/sd/sd-base:cuda12.1-py3.10"


def test_every_runtime_folder_the_pod_names_is_one_the_builder_creates() -> None:
    args = container(deployment())["args"]
    named = [
        args[i + 1] for i, a in enumerate(args) if a.endswith("-dir") and args[i + 1].startswith("/runtime/")
    ]
    assert len(named) == 5
    assert {n.removeprefix("/runtime/") for n in named} <= set(layout.REQUIRED_DIRS)


def test_webui_runs_in_its_own_directory_so_gradio_serves_its_assets() -> None:
    # webui.sh cds into its directory; gradio serves `file=` paths only under its cwd or allowed paths.
    assert container(deployment())["workingDir"] == "/runtime/stable-diffusion-webui"


def _dockerfile_user() -> tuple[int, int]:
    text = (REPO / "images" / "Dockerfile.base").read_text()
    (user,) = re.findall(r"^USER\s+(\d+):(\d+)\s*$", text, flags=re.MULTILINE)
    return int(user[0]), int(user[1])


def test_the_pod_runs_as_the_base_images_user_with_a_read_only_root() -> None:
    dep = deployment()
    uid, gid = _dockerfile_user()
    assert pod_spec(dep)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
    }
    assert container(dep)["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_environment_keeps_webui_offline_and_its_writes_on_data() -> None:
    env = container(deployment())["env"]
    assert all(set(e) == {"name", "value"} for e in env), "no secretKeyRef: credentials are files"
    values = {e["name"]: e["value"] for e in env}
    assert len(values) == len(env)
    assert values["GIT_PYTHON_REFRESH"] == "quiet"
    assert values["HF_HUB_CACHE"] == "/runtime/huggingface/hub"
    assert values["HF_HUB_OFFLINE"] == values["TRANSFORMERS_OFFLINE"] == "1"
    assert values["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert values["SDWORKER_API_AUTH_FILE"] == "/secrets/webui-auth/api-auth"
    assert "SDWORKER_API_AUTH" not in values
    for name in ("HF_HOME", "TMPDIR", "GRADIO_TEMP_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        assert values[name] == "/data" or values[name].startswith("/data/"), name
    assert not any(":" in v for v in values.values()), "nothing that looks like user:password"


def test_the_api_auth_file_is_set_even_without_a_secret_so_the_api_fails_closed() -> None:
    dep = deployment(spec_of(lambda m: m["spec"]["webui"].pop("authSecretRef")))
    values = {e["name"]: e["value"] for e in container(dep)["env"]}
    assert values["SDWORKER_API_AUTH_FILE"] == "/secrets/webui-auth/api-auth"
    assert "webui-auth" not in [v["name"] for v in pod_spec(dep)["volumes"]]


def test_data_is_bounded_and_requested() -> None:
    dep = deployment()
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert volumes["data"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert container(dep)["resources"]["requests"] == {"ephemeral-storage": "2Gi"}
    own = deployment(
        spec_of(set_("spec.resources", {"limits": {_GPU: 1}, "requests": {"ephemeral-storage": "9Gi"}}))
    )
    assert container(own)["resources"]["requests"] == {"ephemeral-storage": "9Gi"}


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
    assert "emptyDir" in volumes["data"]
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
    # Both keys, required (a Secret without api-auth fails the mount: the API is never served open), and
    # readable by the group, which fsGroup makes the container user's (the files are root-owned).
    assert volumes["webui-auth"]["secret"] == {
        "secretName": "webui-auth",
        "defaultMode": 0o440,
        "items": [
            {"key": "gradio-auth", "path": "gradio-auth"},
            {"key": "api-auth", "path": "api-auth"},
        ],
    }
    assert pod_spec(dep)["securityContext"]["fsGroup"] == layout.POD_GID
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    assert mounts["webui-auth"] == {
        "name": "webui-auth",
        "mountPath": "/secrets/webui-auth",
        "readOnly": True,
    }
    assert all("valueFrom" not in e for e in ctr["env"])


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
    assert ctr["resources"] == {
        "limits": {"nvidia.com/gpu": "2"},
        "requests": {"cpu": "4", "ephemeral-storage": "2Gi"},
    }
    assert ctr["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec(dep)["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("args", "alive"),
    [
        ([], {"httpGet": {"path": "/internal/ping", "port": "http"}}),
        (["--api"], {"httpGet": {"path": "/internal/ping", "port": "http"}}),
        # --nowebui serves the API alone: no /internal/ping route (modules/ui.py setup_ui_api).
        (["--nowebui"], {"tcpSocket": {"port": "http"}}),
    ],
)
def test_probes(args: list[str], alive: dict[str, Any]) -> None:
    ctr = container(deployment(spec_of(set_("spec.webui.args", args))))
    for probe in ("startupProbe", "livenessProbe"):
        assert {k: v for k, v in ctr[probe].items() if k in ("httpGet", "tcpSocket")} == alive
    # Ready only once the built-in extension reports the checkpoint loaded, whatever serves the API.
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/sdworker/ready", "port": "http"}


def _budget(disk_type: str, size_gb: int) -> int:
    ctr = container(
        deployment(
            spec_of(set_("spec.runtime.diskType", disk_type), set_("spec.runtime.diskSizeGb", size_gb))
        )
    )
    startup = ctr["startupProbe"]
    budget: int = startup["periodSeconds"] * startup["failureThreshold"]
    return budget


def test_the_startup_budget_follows_the_disks_size_and_read_throughput() -> None:
    # 50 GiB of pd-balanced at min(240, 140 + 0.28 * 50) = 154 MiB/s, read twice, plus 120 s: 785 s.
    assert 785 <= _budget("pd-balanced", 50) < 795
    assert _budget("pd-balanced", 200) > _budget("pd-balanced", 50), "more to read, more time"
    assert _budget("hyperdisk-ml", 50) < _budget("pd-ssd", 50) < _budget("pd-balanced", 50)
    assert _budget("hyperdisk-ml", 10) >= render.STARTUP_OVERHEAD_SECONDS
    assert render.startup_budget_seconds(spec_of().runtime) <= _budget("pd-balanced", 50)


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
    other_args = deployment(spec_of(set_("spec.webui.args", ["--api", "--medvram"])))
    scaled = deployment(spec_of(set_("spec.replicas", 5)))
    assert hash_of(other_runtime) != base_hash
    assert hash_of(other_args) != base_hash
    assert hash_of(scaled) == base_hash  # scaling must not roll the pods


# --- issue 14: rollout gating -----------------------------------------------------------------------------


def _admits(template: dict[str, Any], labels: dict[str, str], taints: list[dict[str, str]]) -> bool:
    """Whether the scheduler may bind a pod of ``template`` to a node with ``labels`` and ``taints``.

    The filters that matter here, as kube-scheduler applies them (kubernetes pkg/scheduler/framework/plugins:
    nodeaffinity.Filter — nodeSelector, then requiredDuringScheduling terms ORed, expressions ANDed;
    tainttoleration.Filter — every NoSchedule/NoExecute taint needs a matching toleration). Preferred
    terms only score, so they never refuse a node.
    """
    spec = template["spec"]
    if any(labels.get(k) != v for k, v in spec.get("nodeSelector", {}).items()):
        return False
    required = (
        spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if required is not None:

        def matches(expr: dict[str, Any]) -> bool:
            if expr["operator"] == "In":
                return labels.get(expr["key"]) in expr["values"]
            if expr["operator"] == "Exists":
                return expr["key"] in labels
            if expr["operator"] == "DoesNotExist":
                return expr["key"] not in labels
            raise AssertionError(f"operator {expr['operator']} not modelled")

        terms = required["nodeSelectorTerms"]
        if not any(all(matches(e) for e in t.get("matchExpressions", [])) for t in terms):
            return False
    tolerations = spec.get("tolerations", [])
    for taint in taints:
        if taint["effect"] in ("NoSchedule", "NoExecute") and not any(
            (t.get("key") in (None, "", taint["key"]))
            and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
            and t.get("effect") in (None, "", taint["effect"])
            for t in tolerations
        ):
            return False
    return True


def test_a_new_template_pod_is_not_admitted_where_its_runtime_is_missing() -> None:
    spec = spec_of()
    old, new = "sd-runtime-v1-00000001", "sd-runtime-v2-00000002"
    template = render.pod_template("sd-webui", spec, new, replaces=(old,))
    # A live node: selector labels, the old runtime mounted and labelled ready, its startup taint long gone.
    live = {**spec.node_selector, naming.runtime_ready_label(old): c.RUNTIME_READY_VALUE}
    assert _admits(template, {**live, naming.runtime_ready_label(new): c.RUNTIME_READY_VALUE}, [])
    assert not _admits(template, live, [])


def test_the_rollout_gate_still_lets_the_autoscaler_scale_from_zero() -> None:
    spec = spec_of()
    old, new = "sd-runtime-v1-00000001", "sd-runtime-v2-00000002"
    template = render.pod_template("sd-webui", spec, new, replaces=(old,))
    startup = [{"key": c.STARTUP_TAINT_KEY, "value": c.STARTUP_TAINT_VALUE, "effect": c.STARTUP_TAINT_EFFECT}]
    # The autoscaler's template node of a pool at zero: the pool's labels and the startup taint, which the
    # autoscaler ignores when simulating (cluster-autoscaler utils/taints: startup taints are sanitized).
    assert _admits(template, dict(spec.node_selector), [])
    # The real node it adds is gated by the taint until its runtimes are mounted.
    assert not _admits(template, dict(spec.node_selector), startup)


def test_outside_a_rollout_nothing_is_required_and_the_gate_outlives_the_rollout() -> None:
    spec = spec_of()
    plain = render.pod_template("sd-webui", spec, "sd-runtime-v1-00000001")
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in plain["spec"]["affinity"]["nodeAffinity"]
    gated = render.pod_template(
        "sd-webui", spec, "sd-runtime-v2-00000002", replaces=("sd-runtime-v1-00000001",)
    )
    assert gated["metadata"]["annotations"][c.ANNOTATION_REPLACES] == "sd-runtime-v1-00000001"
    # The same inputs give the same template, so the Deployment does not roll again when the rollout ends.
    again = render.pod_template(
        "sd-webui", spec, "sd-runtime-v2-00000002", replaces=("sd-runtime-v1-00000001",)
    )
    assert gated == again


def test_the_deployment_rolls_in_place_and_can_be_paused() -> None:
    spec = spec_of()
    dep = render.render_deployment("ns", "sd-webui", "uid", spec, "sd-runtime-v1-00000001", paused=True)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert dep["spec"]["paused"] is True
