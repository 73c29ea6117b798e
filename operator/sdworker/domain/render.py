"""Render the Stable Diffusion workload of an SDWorker: its Deployment, Service and PodDisruptionBudget.

This is where the fast start is encoded: the pods run the small base image, find Python, webui and the model
on the runtime disk the agent mounted on the host, and skip every step of webui's environment preparation.
It is also where the security promises are kept: the runtime is read-only, credentials never appear on the
command line, insecure extension access is off unless asked for, and pods never tolerate the startup taint.
The output is plain dicts, deterministic for equal inputs, so handlers can compare and apply them as-is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import SDWorkerSpec, Toleration, WebUISpec

CONTAINER_NAME: Final = "webui"
PORT_NAME: Final = "http"
RUNTIME_DIR: Final = "/runtime"
DATA_DIR: Final = "/data"
AUTH_DIR: Final = "/secrets/webui-auth"
CKPT_DIR: Final = f"{RUNTIME_DIR}/models/Stable-diffusion"
COMMAND: Final = (f"{RUNTIME_DIR}/venv/bin/python", f"{RUNTIME_DIR}/stable-diffusion-webui/launch.py")
# Everything webui would otherwise do before serving (pip installs, git checkouts, version and CUDA checks,
# model download, checkpoint hashing) is already done on the runtime disk or is pointless on a read-only one.
FAST_START_FLAGS: Final = (
    "--skip-prepare-environment",
    "--skip-install",
    "--skip-torch-cuda-test",
    "--skip-python-version-check",
    "--skip-version-check",
    "--no-download-sd-model",
    "--no-hashing",
)
PING_PATH: Final = "/internal/ping"
API_MODELS_PATH: Final = "/sdapi/v1/sd-models"
API_AUTH_ENV: Final = "SDWORKER_API_AUTH"
SECRET_FILE_MODE: Final = 0o400


class Children(NamedTuple):
    deployment: dict[str, Any]
    service: dict[str, Any]
    pdb: dict[str, Any]


def labels(name: str) -> dict[str, str]:
    """The labels on every child object and pod of the SDWorker ``name``."""
    instance = naming.child_name(name)
    return {
        c.LABEL_APP_INSTANCE: instance,
        c.LABEL_APP_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_APP_NAME: c.APP_NAME,
        c.LABEL_SDWORKER: instance,
    }


def selector_labels(name: str) -> dict[str, str]:
    """The subset of ``labels`` that selects the pods; immutable on a Deployment, so kept minimal."""
    instance = naming.child_name(name)
    return {c.LABEL_APP_INSTANCE: instance, c.LABEL_SDWORKER: instance}


def label_selector(name: str) -> str:
    """``selector_labels`` as a label-selector string, as the scale subresource wants in status.selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.SDWORKER_KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "name": naming.child_name(name),
        "namespace": namespace,
        "labels": labels(name),
        "ownerReferences": [owner_reference(name, uid)],
    }


def webui_args(webui: WebUISpec) -> list[str]:
    """The arguments after ``launch.py``: the operator's flags first, the user's last."""
    args = [
        *FAST_START_FLAGS,
        "--data-dir",
        DATA_DIR,
        "--ckpt-dir",
        CKPT_DIR,
        "--ckpt",
        f"{CKPT_DIR}/{webui.model}",
        "--listen",
        "--port",
        str(webui.port),
    ]
    if webui.auth_secret_name is not None:
        # webui reads "user:password" lines from this file, so the credentials stay in the Secret volume.
        args += ["--gradio-auth-path", f"{AUTH_DIR}/{c.AUTH_KEY_GRADIO}"]
    if webui.allow_insecure_extension_access:
        args.append(c.INSECURE_EXTENSIONS_FLAG)
    return [*args, *webui.args]


def _serves_api(webui: WebUISpec) -> bool:
    return "--api" in webui.args or "--nowebui" in webui.args


def _probe(path: str, *, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def probes(webui: WebUISpec) -> dict[str, dict[str, Any]]:
    """startup, readiness and liveness probes.

    /internal/ping answers as soon as the UI server is up. With the API enabled, readiness waits for the API
    to list models, the first thing a client calls. ``--nowebui`` runs the API alone, without the ping route.
    """
    ping = API_MODELS_PATH if "--nowebui" in webui.args else PING_PATH
    ready = API_MODELS_PATH if _serves_api(webui) else PING_PATH
    return {
        # Loading the checkpoint into GPU memory dominates start-up; allow 5 minutes before restarting.
        "startupProbe": _probe(ping, period=5, failures=60, timeout=3),
        "readinessProbe": _probe(ready, period=10, failures=3, timeout=5),
        # Generous: a busy GPU slows responses, and a restart costs a full model load.
        "livenessProbe": _probe(ping, period=20, failures=6, timeout=10),
    }


def tolerates_startup_taint(toleration: Toleration) -> bool:
    """Whether a toleration would let a pod onto a node whose runtime is not mounted yet."""
    if toleration.key == c.STARTUP_TAINT_KEY:
        return toleration.effect in ("", c.STARTUP_TAINT_EFFECT) and (
            toleration.operator == "Exists" or toleration.value == c.STARTUP_TAINT_VALUE
        )
    return not toleration.key and toleration.effect in ("", c.STARTUP_TAINT_EFFECT)


def _env(webui: WebUISpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},  # the runtime is read-only
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if webui.auth_secret_name is not None:
        # webui takes API credentials only as `--api-auth user:password` on its command line, which would
        # publish them in the pod spec; there is no file or environment form. So the operator never passes
        # --api-auth: the key is offered as an environment variable for a base image entrypoint or an
        # extension that enforces it, and is optional so a Secret with only gradio-auth still works.
        env.append(
            {
                "name": API_AUTH_ENV,
                "valueFrom": {
                    "secretKeyRef": {
                        "name": webui.auth_secret_name,
                        "key": c.AUTH_KEY_API,
                        "optional": True,
                    }
                },
            }
        )
    return env


def _volumes(spec: SDWorkerSpec, runtime_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "runtime", "hostPath": {"path": naming.mount_path(runtime_id), "type": "Directory"}},
        {"name": "data", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        # HostToContainer lets the agent's unmount reach the pod, so a disk is never held busy by a pod's
        # private copy of the mount when it is detached.
        {
            "name": "runtime",
            "mountPath": RUNTIME_DIR,
            "readOnly": True,
            "mountPropagation": "HostToContainer",
        },
        {"name": "data", "mountPath": DATA_DIR},
    ]
    if spec.webui.auth_secret_name is not None:
        volumes.append(
            {
                "name": "webui-auth",
                "secret": {
                    "secretName": spec.webui.auth_secret_name,
                    "defaultMode": SECRET_FILE_MODE,
                    # Required: --gradio-auth-path names this file, and webui fails fast without it.
                    "items": [{"key": c.AUTH_KEY_GRADIO, "path": c.AUTH_KEY_GRADIO}],
                },
            }
        )
        mounts.append({"name": "webui-auth", "mountPath": AUTH_DIR, "readOnly": True})
    return volumes, mounts


def _runtime_affinity(runtime_id: str) -> dict[str, Any]:
    """Prefer nodes where this runtime is mounted, without requiring it.

    Gating is the startup taint's job (DESIGN section 4). A *required* runtime label would stop the
    cluster-autoscaler from scaling up: its template node (a node pool at zero) has no such label,
    so it would conclude that a new node cannot host the pending pods. The preference still steers
    pods to nodes that already have the runtime when a node holds several.
    """
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {
                                "key": naming.runtime_ready_label(runtime_id),
                                "operator": "In",
                                "values": [c.RUNTIME_READY_VALUE],
                            }
                        ]
                    },
                }
            ]
        }
    }


def spec_hash(obj: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-like object (key order does not matter)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_template(name: str, spec: SDWorkerSpec, runtime_id: str) -> dict[str, Any]:
    volumes, mounts = _volumes(spec, runtime_id)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.webui.base_image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(COMMAND),
        "args": webui_args(spec.webui),
        "env": _env(spec.webui),
        "ports": [{"name": PORT_NAME, "containerPort": spec.webui.port, "protocol": "TCP"}],
        "resources": spec.resources.to_dict(),
        "volumeMounts": mounts,
        **probes(spec.webui),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            # webui writes caches and config under $HOME in the image.
            "readOnlyRootFilesystem": False,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    template: dict[str, Any] = {
        "metadata": {
            "labels": labels(name),
            "annotations": {c.ANNOTATION_RUNTIME_ID: runtime_id},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "nodeSelector": dict(sorted(spec.node_selector.items())),
            "affinity": _runtime_affinity(runtime_id),
            "tolerations": [t.to_dict() for t in spec.tolerations if not tolerates_startup_taint(t)],
            "containers": [container],
            "volumes": volumes,
        },
    }
    template["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] = spec_hash(template)
    return template


def render_deployment(
    namespace: str, name: str, uid: str, spec: SDWorkerSpec, runtime_id: str
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(namespace, name, uid),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name)},
            # Keep serving capacity during a roll: the surge pod gets a fresh GPU node from the autoscaler.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod_template(name, spec, runtime_id),
        },
    }


def render_service(namespace: str, name: str, uid: str, spec: SDWorkerSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(namespace, name, uid),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {"name": PORT_NAME, "port": spec.webui.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def render_pdb(namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(namespace, name, uid),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(name)},
            # A pod that never became ready (say, on a broken node) must not block draining that node.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_children(namespace: str, name: str, uid: str, spec: SDWorkerSpec, runtime_id: str) -> Children:
    return Children(
        deployment=render_deployment(namespace, name, uid, spec, runtime_id),
        service=render_service(namespace, name, uid, spec),
        pdb=render_pdb(namespace, name, uid),
    )
