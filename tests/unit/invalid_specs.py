"""SDWorker manifests as test data: one valid manifest and tables of mutations that break it or keep it valid.

The same tables drive two tests: the parser must reject every invalid case (unit), and the API server with
the CRD installed must reject it too (integration), each naming the field and saying why. Keeping the cases
as data in one place is what makes the CRD and the parser provably agree. Each expected field and message
substring occurs in both the parser's error and the API server's, so neither test needs its own copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

from sdworker.api.constants import STARTUP_TAINT_KEY

Manifest = dict[str, Any]
Mutation = Callable[[Manifest], None]


class Case(NamedTuple):
    id: str
    mutate: Mutation
    field: str
    """A substring of the rejected field's path, e.g. ``spec.runtime.diskSizeGb``."""
    message: str
    """A substring of the rejection message."""


class ValidCase(NamedTuple):
    id: str
    mutate: Mutation


def valid_sdworker(name: str = "sd-webui", namespace: str = "default") -> Manifest:
    """A complete, valid SDWorker manifest (the one in examples/sdworker.yaml)."""
    return {
        "apiVersion": "sdworker.dev/v1alpha1",
        "kind": "SDWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "runtime": {
                "image": "projects/sdworker-demo/global/images/family/sd-runtime",
                "diskType": "pd-balanced",
                "diskSizeGb": 50,
                "mode": "PerNode",
                "warmPool": {"size": 0},
                "prefetch": ["models/Stable-diffusion/v1-5-pruned-emaonly.safetensors"],
            },
            "webui": {
                "baseImage": "us-docker.pkg.dev/sdworker-demo/sd/sd-base:cuda12.1-py3.10",
                "model": "v1-5-pruned-emaonly.safetensors",
                "args": ["--api"],
                "allowInsecureExtensionAccess": False,
                "port": 7860,
                "authSecretRef": {"name": "webui-auth"},
            },
            "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        },
    }


def mutated(mutation: Mutation, name: str = "sd-webui", namespace: str = "default") -> Manifest:
    """A fresh valid manifest with ``mutation`` applied."""
    manifest = copy.deepcopy(valid_sdworker(name, namespace))
    mutation(manifest)
    return manifest


def _walk(manifest: Manifest, path: tuple[str, ...]) -> dict[str, Any]:
    node: dict[str, Any] = manifest
    for key in path:
        node = node.setdefault(key, {})
    return node


def set_(dotted: str, value: object) -> Mutation:
    """Set a field given as ``spec.runtime.diskSizeGb`` (map keys only; values are deep-copied)."""
    *parents, leaf = dotted.split(".")

    def mutation(manifest: Manifest) -> None:
        _walk(manifest, tuple(parents))[leaf] = copy.deepcopy(value)

    return mutation


def delete(dotted: str) -> Mutation:
    *parents, leaf = dotted.split(".")

    def mutation(manifest: Manifest) -> None:
        _walk(manifest, tuple(parents)).pop(leaf, None)

    return mutation


def both(*mutations: Mutation) -> Mutation:
    def mutation(manifest: Manifest) -> None:
        for m in mutations:
            m(manifest)

    return mutation


def _args(*args: str) -> Mutation:
    return set_("spec.webui.args", list(args))


def _toleration(**fields: object) -> Mutation:
    return set_("spec.tolerations", [fields])


def _limits(**limits: object) -> Mutation:
    return set_("spec.resources", {"limits": limits})


_GPU = "nvidia.com/gpu"
_OWNED = "flags the operator owns"
_CREDS = "must not carry credentials"
_INSECURE = "unless allowInsecureExtensionAccess is true"
_PUBLIC = "must not open webui to the internet"
_EXTENSIONS_OFF = "turns off the built-in sdworker extension"

INVALID_SPECS: tuple[Case, ...] = (
    Case("replicas-negative", set_("spec.replicas", -1), "spec.replicas", "greater than or equal to 0"),
    Case("replicas-above-max", set_("spec.replicas", 1001), "spec.replicas", "less than or equal to 1000"),
    Case("replicas-not-integer", set_("spec.replicas", "two"), "spec.replicas", "must be of type integer"),
    Case("runtime-missing", delete("spec.runtime"), "spec.runtime", "Required value"),
    Case("runtime-image-missing", delete("spec.runtime.image"), "spec.runtime.image", "Required value"),
    Case(
        "runtime-image-not-gce",
        set_("spec.runtime.image", "gcr.io/p/img"),
        "spec.runtime.image",
        "should match",
    ),
    Case(
        "runtime-image-bad-project",
        set_("spec.runtime.image", "projects/P/global/images/sd"),
        "spec.runtime.image",
        "should match",
    ),
    Case(
        "runtime-image-bad-name",
        set_("spec.runtime.image", "projects/sdworker-demo/global/images/SD_Runtime"),
        "spec.runtime.image",
        "should match",
    ),
    Case(
        "runtime-image-trailing-newline",
        set_("spec.runtime.image", "projects/sdworker-demo/global/images/sd-runtime\n"),
        "spec.runtime.image",
        "should match",
    ),
    Case(
        "runtime-image-family-no-name",
        set_("spec.runtime.image", "projects/sdworker-demo/global/images/family/"),
        "spec.runtime.image",
        "should match",
    ),
    Case(
        "disk-type-unknown",
        set_("spec.runtime.diskType", "pd-standard"),
        "spec.runtime.diskType",
        "Unsupported",
    ),
    Case(
        "disk-smaller-than-image",
        set_("spec.runtime.diskSizeGb", 5),
        "spec.runtime.diskSizeGb",
        "smaller than the runtime image minimum of 10 GB",
    ),
    Case(
        "disk-above-max",
        set_("spec.runtime.diskSizeGb", 70000),
        "spec.runtime.diskSizeGb",
        "less than or equal to 65536",
    ),
    Case("mode-unknown", set_("spec.runtime.mode", "Shared"), "spec.runtime.mode", "Unsupported value"),
    Case(
        "warm-pool-negative",
        set_("spec.runtime.warmPool.size", -1),
        "spec.runtime.warmPool.size",
        "greater than or equal to 0",
    ),
    Case(
        "warm-pool-above-max",
        set_("spec.runtime.warmPool.size", 21),
        "spec.runtime.warmPool.size",
        "less than or equal to 20",
    ),
    Case(
        "warm-pool-with-shared-mode",
        both(set_("spec.runtime.mode", "SharedReadOnly"), set_("spec.runtime.warmPool.size", 2)),
        "spec.runtime.warmPool.size",
        "must be 0 when mode is SharedReadOnly",
    ),
    Case(
        "shared-read-only-hyperdisk-balanced",
        both(
            set_("spec.runtime.mode", "SharedReadOnly"), set_("spec.runtime.diskType", "hyperdisk-balanced")
        ),
        "spec.runtime.diskType",
        "attach read-only to many VMs when mode is SharedReadOnly",
    ),
    Case(
        "prefetch-absolute",
        set_("spec.runtime.prefetch", ["/etc/shadow"]),
        "spec.runtime.prefetch[0]",
        "relative paths",
    ),
    Case(
        "prefetch-parent-segment",
        set_("spec.runtime.prefetch", ["models/../../etc/shadow"]),
        "spec.runtime.prefetch[0]",
        "'..' segment",
    ),
    Case(
        "prefetch-leading-parent", set_("spec.runtime.prefetch", ["../x"]), "spec.runtime.prefetch[0]", "'..'"
    ),
    Case(
        "prefetch-trailing-parent",
        set_("spec.runtime.prefetch", ["a/.."]),
        "spec.runtime.prefetch[0]",
        "'..'",
    ),
    Case(
        "prefetch-empty-entry",
        set_("spec.runtime.prefetch", [""]),
        "spec.runtime.prefetch[0]",
        "must not be empty",
    ),
    Case(
        "prefetch-duplicate",
        set_("spec.runtime.prefetch", ["models/a", "models/a"]),
        "spec.runtime.prefetch[1]",
        "Duplicate value",
    ),
    Case(
        "prefetch-too-many",
        set_("spec.runtime.prefetch", [f"models/{i}" for i in range(65)]),
        "spec.runtime.prefetch",
        "must have at most 64 items",
    ),
    Case("webui-missing", delete("spec.webui"), "spec.webui", "Required value"),
    Case("base-image-missing", delete("spec.webui.baseImage"), "spec.webui.baseImage", "Required value"),
    Case(
        "base-image-invalid",
        set_("spec.webui.baseImage", "Not An Image"),
        "spec.webui.baseImage",
        "should match",
    ),
    Case(
        "base-image-too-long",
        set_("spec.webui.baseImage", "registry.example.com/" + "a" * 500),
        "spec.webui.baseImage",
        "Too long",
    ),
    Case(
        "model-wrong-extension",
        set_("spec.webui.model", "model.bin"),
        "spec.webui.model",
        ".safetensors or .ckpt",
    ),
    Case("model-is-a-path", set_("spec.webui.model", "../../x.safetensors"), "spec.webui.model", "file name"),
    Case(
        "args-insecure-without-opt-in",
        _args("--api", "--enable-insecure-extension-access"),
        "spec.webui.args",
        _INSECURE,
    ),
    Case("args-insecure-abbreviated", _args("--enable-insecure"), "spec.webui.args", _INSECURE),
    Case("args-gradio-auth", _args("--gradio-auth", "admin:pw"), "spec.webui.args[0]", _CREDS),
    Case("args-gradio-auth-path", _args("--api", "--gradio-auth-path=/x"), "spec.webui.args[1]", _CREDS),
    Case("args-api-auth-equals", _args("--api-auth=admin:pw"), "spec.webui.args[0]", _CREDS),
    Case("args-api-auth-abbreviated", _args("--api-a", "admin:pw"), "spec.webui.args[0]", _CREDS),
    Case("args-port", _args("--port", "8080"), "spec.webui.args[0]", _OWNED),
    Case("args-listen", _args("--listen"), "spec.webui.args[0]", _OWNED),
    Case("args-data-dir-equals", _args("--data-dir=/tmp"), "spec.webui.args[0]", _OWNED),
    Case("args-ckpt", _args("--ckpt", "/x.safetensors"), "spec.webui.args[0]", _OWNED),
    Case("args-skip-install", _args("--skip-install"), "spec.webui.args[0]", _OWNED),
    # The runtime's read-only model folders are the operator's (issue 12, item 7).
    Case("args-lora-dir", _args("--lora-dir", "/data/lora"), "spec.webui.args[0]", _OWNED),
    Case("args-vae-dir-equals", _args("--api", "--vae-dir=/x"), "spec.webui.args[1]", _OWNED),
    Case("args-embeddings-dir", _args("--embeddings-dir", "/x"), "spec.webui.args[0]", _OWNED),
    Case("args-hypernetwork-dir-abbreviated", _args("--hypernetwork", "/x"), "spec.webui.args[0]", _OWNED),
    # Public tunnels (issue 12, item 10): modules/cmd_args.py v1.10.1 --share and the --ngrok family.
    Case("args-share", _args("--share"), "spec.webui.args[0]", _PUBLIC),
    Case("args-share-abbreviated", _args("--api", "--sha"), "spec.webui.args[1]", _PUBLIC),
    Case("args-ngrok-token", _args("--ngrok", "2abcTOKEN"), "spec.webui.args[0]", _PUBLIC),
    Case(
        "args-ngrok-options-equals",
        _args('--ngrok-options={"basic_auth":"u:p"}'),
        "spec.webui.args[0]",
        _PUBLIC,
    ),
    Case("args-ngrok-region", _args("--ngrok-region=us"), "spec.webui.args[0]", _PUBLIC),
    Case(
        "args-disable-all-extensions",
        _args("--disable-all-extensions"),
        "spec.webui.args[0]",
        _EXTENSIONS_OFF,
    ),
    Case("args-too-many", _args(*["--xformers"] * 65), "spec.webui.args", "must have at most 64 items"),
    Case("port-privileged", set_("spec.webui.port", 80), "spec.webui.port", "greater than or equal to 1024"),
    Case("port-above-max", set_("spec.webui.port", 70000), "spec.webui.port", "less than or equal to 65535"),
    Case(
        "auth-secret-name-invalid",
        set_("spec.webui.authSecretRef", {"name": "Web_UI"}),
        "spec.webui.authSecretRef.name",
        "should match",
    ),
    Case(
        "auth-secret-name-missing",
        set_("spec.webui.authSecretRef", {}),
        "spec.webui.authSecretRef.name",
        "Required value",
    ),
    Case("node-selector-missing", delete("spec.nodeSelector"), "spec.nodeSelector", "Required value"),
    Case("node-selector-empty", set_("spec.nodeSelector", {}), "spec.nodeSelector", "at least 1 properties"),
    Case(
        "node-selector-bad-value",
        set_("spec.nodeSelector", {"pool": "not valid!"}),
        "spec.nodeSelector",
        "should match",
    ),
    Case(
        "toleration-startup-taint",
        _toleration(key=STARTUP_TAINT_KEY, operator="Exists", effect="NoSchedule"),
        "spec.tolerations[0]",
        "startup taint",
    ),
    Case("toleration-everything", _toleration(operator="Exists"), "spec.tolerations[0]", "startup taint"),
    Case(
        "toleration-every-noschedule",
        _toleration(operator="Exists", effect="NoSchedule"),
        "spec.tolerations[0]",
        "startup taint",
    ),
    Case(
        "toleration-bad-operator",
        _toleration(key="a", operator="In", value="b"),
        "spec.tolerations[0].operator",
        "Unsupported value",
    ),
    Case(
        "toleration-bad-effect",
        _toleration(key="a", operator="Exists", effect="NoRun"),
        "spec.tolerations[0].effect",
        "Unsupported value",
    ),
    Case(
        "toleration-exists-with-value",
        _toleration(key="a", operator="Exists", value="b"),
        "spec.tolerations[0].value",
        "value must be empty when operator is Exists",
    ),
    Case(
        "toleration-seconds-without-noexecute",
        _toleration(key="a", operator="Exists", effect="NoSchedule", tolerationSeconds=30),
        "spec.tolerations[0].tolerationSeconds",
        "only valid with effect NoExecute",
    ),
    Case(
        "toleration-empty-key-equal",
        _toleration(operator="Equal", value="x", effect="NoExecute"),
        "spec.tolerations[0].operator",
        "operator must be Exists when key is empty",
    ),
    Case("resources-no-gpu-limit", _limits(cpu="4"), "spec.resources.limits", _GPU),
    Case("resources-zero-gpu", _limits(**{_GPU: 0}), "spec.resources.limits", _GPU),
    Case("resources-fractional-gpu", _limits(**{_GPU: "500m"}), "spec.resources.limits", _GPU),
    Case(
        "resources-requests-only",
        set_("spec.resources", {"requests": {_GPU: 1}}),
        "spec.resources.limits",
        _GPU,
    ),
    Case(
        "resources-bad-quantity",
        _limits(**{_GPU: 1, "memory": "lots"}),
        "spec.resources.limits",
        "should match",
    ),
    Case("name-not-dns1035", set_("metadata.name", "sd.webui"), "metadata.name", "DNS-1035"),
    Case("name-too-long", set_("metadata.name", "a" * 64), "metadata.name", "DNS-1035"),
)

# Edge cases that must be accepted: the rules above must not catch legitimate specs.
VALID_VARIANTS: tuple[ValidCase, ...] = (
    ValidCase("as-is", lambda m: None),
    ValidCase("replicas-zero", set_("spec.replicas", 0)),
    ValidCase(
        "concrete-image", set_("spec.runtime.image", "projects/sdworker-demo/global/images/sd-runtime-v3")
    ),
    ValidCase(
        "shared-read-only",
        both(set_("spec.runtime.mode", "SharedReadOnly"), set_("spec.runtime.warmPool", {"size": 0})),
    ),
    ValidCase("warm-pool", set_("spec.runtime.warmPool.size", 20)),
    ValidCase("hyperdisk-ml", set_("spec.runtime.diskType", "hyperdisk-ml")),
    ValidCase(
        "shared-hyperdisk-ml",
        both(set_("spec.runtime.mode", "SharedReadOnly"), set_("spec.runtime.diskType", "hyperdisk-ml")),
    ),
    ValidCase(
        "shared-pd-ssd",
        both(set_("spec.runtime.mode", "SharedReadOnly"), set_("spec.runtime.diskType", "pd-ssd")),
    ),
    ValidCase("per-node-hyperdisk-balanced", set_("spec.runtime.diskType", "hyperdisk-balanced")),
    ValidCase("disk-minimum", set_("spec.runtime.diskSizeGb", 10)),
    ValidCase("prefetch-dots-in-names", set_("spec.runtime.prefetch", ["models/a..b", ".cache/x", "a/./b"])),
    ValidCase("ckpt-model", set_("spec.webui.model", "sd-v1-4.ckpt")),
    ValidCase("api-flags", _args("--api", "--api-log", "--nowebui", "--xformers", "--medvram")),
    ValidCase("flag-values-are-not-flags", _args("--styles-file", "port.csv", "--device-id=0")),
    ValidCase("built-in-extensions-stay-on", _args("--disable-extra-extensions", "--no-half-vae")),
    ValidCase("share-as-a-value-is-not-a-flag", _args("--styles-file", "share.csv")),
    ValidCase(
        "insecure-with-opt-in",
        both(
            _args("--enable-insecure-extension-access"),
            set_("spec.webui.allowInsecureExtensionAccess", True),
        ),
    ),
    ValidCase("no-auth", delete("spec.webui.authSecretRef")),
    ValidCase(
        "no-optional-fields",
        both(delete("spec.replicas"), delete("spec.tolerations"), delete("spec.resources")),
    ),
    ValidCase(
        "toleration-equal",
        _toleration(key="nvidia.com/gpu", operator="Equal", value="present", effect="NoSchedule"),
    ),
    ValidCase(
        "toleration-every-noexecute", _toleration(operator="Exists", effect="NoExecute", tolerationSeconds=60)
    ),
    ValidCase("gpu-as-string", _limits(**{_GPU: "2", "memory": "16Gi", "cpu": "3500m"})),
    ValidCase("node-selector-two-keys", set_("spec.nodeSelector", {"a.example.com/x": "y", "pool": "gpu"})),
)
