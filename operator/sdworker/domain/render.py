"""Render the Stable Diffusion workload of an SDWorker: its Deployment, Service and PodDisruptionBudget.

This is where the fast start is encoded: the pods run the small base image, find Python, webui and the model
on the runtime disk the agent mounted on the host, and skip every step of webui's environment preparation.
It is also where the SD pod contract (``sdworker.runtime_layout``; README "The SD pod contract") is kept:
the pod runs as the base image's user on a read-only root and a read-only runtime, every write lands on the
``/data`` emptyDir, credentials are files in a Secret volume (never argv or env), Hugging Face is offline,
and a pod is Ready only once the built-in extension reports the model loaded. Pods never tolerate the
startup taint. The output is plain dicts, deterministic for equal inputs, so handlers can apply them as-is.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from sdworker import runtime_layout as layout
from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import DiskType, RuntimeSpec, SDWorkerSpec, Toleration, WebUISpec

CONTAINER_NAME: Final = "webui"
PORT_NAME: Final = "http"
RUNTIME_DIR: Final = layout.RUNTIME_MOUNT
DATA_DIR: Final = layout.DATA_DIR
AUTH_DIR: Final = layout.AUTH_DIR
CKPT_DIR: Final = layout.in_pod(layout.CKPT_DIR)
COMMAND: Final = (layout.in_pod(layout.VENV_PYTHON), layout.in_pod(layout.LAUNCH_SCRIPT))
# webui.sh cds into webui's own directory, and gradio serves the UI's `file=` scripts and styles only under
# its working directory (or --gradio-allowed-path); the base image's WORKDIR is /home/sd.
WORKING_DIR: Final = layout.in_pod(layout.WEBUI_DIR)
PING_PATH: Final = layout.PING_PATH
READY_PATH: Final = layout.READY_PATH
# Read by owner and group only; the kubelet makes the files' group the pod's fsGroup (the container user).
SECRET_FILE_MODE: Final = 0o440
# /data holds webui's settings, caches, gradio's temp files and the UI's saved images: bounded, and requested
# so the scheduler counts it against the node's ephemeral storage.
DATA_SIZE_LIMIT: Final = "20Gi"
DATA_REQUEST: Final = "2Gi"
EPHEMERAL_STORAGE: Final = "ephemeral-storage"

# --- the startup budget: how long webui may take before /internal/ping answers ---
# Before the server answers, webui imports PyTorch and the rest of the venv and builds the UI, all read from
# the runtime disk (the checkpoint itself loads in a background thread, after, and only gates readiness).
# The operator cannot know how much of the disk that is (the manifest is not read at render time), so it
# plans with the whole disk, diskSizeGb, as the upper bound, at the disk type's baseline read throughput
# (GCE persistent disk and Hyperdisk performance docs: pd-balanced and pd-ssd 140 MiB/s baseline plus
# 0.28 / 0.48 MiB/s per GiB, capped at 240 MiB/s, the per-VM read limit of small GPU machine types;
# hyperdisk-balanced's default provisioned 140 MiB/s; hyperdisk-ml's minimum provisioned 400 MiB/s).
# Reads are counted twice: a disk created from an image is restored lazily, so first reads are slower.
STARTUP_OVERHEAD_SECONDS: Final = 120
STARTUP_READ_FACTOR: Final = 2
STARTUP_PERIOD_SECONDS: Final = 10
# disk type -> (baseline MiB/s, MiB/s per GiB of size, cap MiB/s)
DISK_READ_MIBPS: Final[Mapping[DiskType, tuple[float, float, float]]] = {
    DiskType.PD_BALANCED: (140.0, 0.28, 240.0),
    DiskType.PD_SSD: (140.0, 0.48, 240.0),
    DiskType.HYPERDISK_BALANCED: (140.0, 0.0, 140.0),
    DiskType.HYPERDISK_ML: (400.0, 0.0, 400.0),
}


def disk_read_mibps(runtime: RuntimeSpec) -> float:
    """The read throughput, MiB/s, a fresh runtime disk of this type and size is planned to deliver."""
    base, per_gib, cap = DISK_READ_MIBPS[runtime.disk_type]
    return min(cap, base + per_gib * runtime.disk_size_gb)


def startup_budget_seconds(runtime: RuntimeSpec) -> int:
    """Seconds from container start until webui must answer: overhead plus reading the disk, twice over."""
    read = runtime.disk_size_gb * 1024 / disk_read_mibps(runtime)
    return STARTUP_OVERHEAD_SECONDS + math.ceil(STARTUP_READ_FACTOR * read)


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
    args = [*layout.FAST_START_FLAGS, "--data-dir", DATA_DIR]
    # With --data-dir /data, webui would look for models under /data/models (empty): name the runtime's.
    for flag, folder in layout.MODEL_DIR_FLAGS:
        args += [flag, layout.in_pod(folder)]
    args += ["--ckpt", f"{CKPT_DIR}/{webui.model}", "--listen", "--port", str(webui.port)]
    if webui.auth_secret_name is not None:
        # webui reads "user:password" lines from this file, so the credentials stay in the Secret volume.
        args += ["--gradio-auth-path", layout.GRADIO_AUTH_FILE]
    if webui.allow_insecure_extension_access:
        args.append(c.INSECURE_EXTENSIONS_FLAG)
    return [*args, *webui.args]


def _http_probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT_NAME}}


def probes(spec: SDWorkerSpec) -> dict[str, dict[str, Any]]:
    """startup, readiness and liveness probes.

    Liveness is webui's own /internal/ping, which answers as soon as the server is up; ``--nowebui`` runs
    the API alone, without that route, so there the probes check the port. Readiness is the built-in
    extension's /sdworker/ready, which passes only once the checkpoint is in memory (webui loads it in a
    background thread, and its own routes answer before that and after a failed load). The startup budget
    follows the disk (``startup_budget_seconds``).
    """
    alive = {"tcpSocket": {"port": PORT_NAME}} if "--nowebui" in spec.webui.args else _http_probe(PING_PATH)
    failures = math.ceil(startup_budget_seconds(spec.runtime) / STARTUP_PERIOD_SECONDS)
    return {
        "startupProbe": {
            **alive,
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": failures,
            "timeoutSeconds": 3,
        },
        # Out of the Service within seconds of a failed load or a model switch; back as soon as it is loaded.
        "readinessProbe": {
            **_http_probe(READY_PATH),
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 3,
        },
        # Generous: a busy GPU slows responses, and a restart costs a full model load.
        "livenessProbe": {**alive, "periodSeconds": 20, "failureThreshold": 6, "timeoutSeconds": 10},
    }


def tolerates_startup_taint(toleration: Toleration) -> bool:
    """Whether a toleration would let a pod onto a node whose runtime is not mounted yet."""
    if toleration.key == c.STARTUP_TAINT_KEY:
        return toleration.effect in ("", c.STARTUP_TAINT_EFFECT) and (
            toleration.operator == "Exists" or toleration.value == c.STARTUP_TAINT_VALUE
        )
    return not toleration.key and toleration.effect in ("", c.STARTUP_TAINT_EFFECT)


def _env() -> list[dict[str, Any]]:
    # Names and values from the pod contract; the API credentials are named by file path, never by value.
    return [{"name": name, "value": value} for name, value in layout.POD_ENV]


def _volumes(spec: SDWorkerSpec, runtime_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "runtime", "hostPath": {"path": naming.mount_path(runtime_id), "type": "Directory"}},
        {"name": "data", "emptyDir": {"sizeLimit": DATA_SIZE_LIMIT}},
    ]
    mounts: list[dict[str, Any]] = [
        # HostToContainer makes the bind a slave of the host's mount: a runtime the agent mounts later at
        # the same path shows up in the pod. It does NOT make the agent's unmount wait for the pod: the
        # host's umount succeeds while the pod's bind still reads the filesystem (tests/integration/
        # test_rollout.py), so the operator retires a runtime only once no pod bound to the node uses it.
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
                    # Both required: webui fails fast without the --gradio-auth-path file, and an API left
                    # without credentials must not serve. A Secret lacking either key fails the mount, so
                    # the pod never starts (FailedMount names the key) instead of starting half-protected.
                    "items": [
                        {"key": c.AUTH_KEY_GRADIO, "path": c.AUTH_KEY_GRADIO},
                        {"key": c.AUTH_KEY_API, "path": c.AUTH_KEY_API},
                    ],
                },
            }
        )
        mounts.append({"name": "webui-auth", "mountPath": AUTH_DIR, "readOnly": True})
    return volumes, mounts


def _resources(spec: SDWorkerSpec) -> dict[str, Any]:
    """The user's resources, plus an ephemeral-storage request for /data unless they set one."""
    resources = spec.resources.to_dict()
    requests = dict(resources.get("requests", {}))
    requests.setdefault(EPHEMERAL_STORAGE, DATA_REQUEST)
    resources["requests"] = dict(sorted(requests.items()))
    return resources


def _runtime_affinity(runtime_id: str, replaces: tuple[str, ...] = ()) -> dict[str, Any]:
    """Prefer nodes where this runtime is mounted; during a runtime rollout, require it on live nodes.

    Outside a rollout (``replaces`` empty) nothing is required: gating a new node is the startup taint's
    job (docs/architecture.md section 4), and a *required* runtime label would stop the cluster-autoscaler
    from scaling up from zero, since its template node (a node pool at zero) has no such label and would be
    judged unable to host the pending pods.

    A rollout (issue 14) rolls pods of runtime R onto *live* nodes, whose startup taint is long gone and
    which hold the runtimes R replaces. There the gate is a required affinity with two ORed terms:
    "R is ready on the node", or "none of the replaced runtimes is ready on the node". A live node that
    still has only an old runtime matches neither, so a new-template pod never binds where its runtime is
    missing. A template node (no labels at all) matches the second term, so the autoscaler still simulates
    scale-up from zero; the real node it adds then carries the startup taint until its runtimes are
    mounted. The alternative of a "runtime pending" label with DoesNotExist would need someone to label
    every live node before the template switches (a node write the operator has no right to), and a label
    required only while rolling would block scale-from-zero for the rollout's whole length. The terms are
    rendered from ``replaces`` (recorded on the template), so they stay identical after the rollout ends:
    the template, and so the ReplicaSet, does not change a second time.
    """
    affinity: dict[str, Any] = {
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
    if replaces:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": naming.runtime_ready_label(runtime_id),
                            "operator": "In",
                            "values": [c.RUNTIME_READY_VALUE],
                        }
                    ]
                },
                {
                    "matchExpressions": [
                        {"key": naming.runtime_ready_label(old), "operator": "DoesNotExist"}
                        for old in replaces
                    ]
                },
            ]
        }
    return {"nodeAffinity": affinity}


def spec_hash(obj: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-like object (key order does not matter)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_template(
    name: str, spec: SDWorkerSpec, runtime_id: str, replaces: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The SD pod template for ``runtime_id``; ``replaces`` are the runtimes a rollout moves off (the gate,
    see ``_runtime_affinity``)."""
    replaces = tuple(sorted(set(replaces) - {runtime_id}))
    volumes, mounts = _volumes(spec, runtime_id)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.webui.base_image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(COMMAND),
        "args": webui_args(spec.webui),
        "workingDir": WORKING_DIR,
        "env": _env(),
        "ports": [{"name": PORT_NAME, "containerPort": spec.webui.port, "protocol": "TCP"}],
        "resources": _resources(spec),
        "volumeMounts": mounts,
        **probes(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            # Every write webui makes at start and on requests lands on /data (--data-dir, TMPDIR,
            # GRADIO_TEMP_DIR, HF_HOME, XDG_*) or is a makedirs of a directory the runtime already has.
            "readOnlyRootFilesystem": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    template: dict[str, Any] = {
        "metadata": {
            "labels": labels(name),
            "annotations": {
                c.ANNOTATION_RUNTIME_ID: runtime_id,
                **({c.ANNOTATION_REPLACES: ",".join(replaces)} if replaces else {}),
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            # The base image's user (images/Dockerfile.base USER); fsGroup makes /data and the Secret's
            # files group-owned by it, so the 0440 credentials are readable and nothing runs as root.
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": layout.POD_UID,
                "runAsGroup": layout.POD_GID,
                "fsGroup": layout.POD_GID,
            },
            "nodeSelector": dict(sorted(spec.node_selector.items())),
            "affinity": _runtime_affinity(runtime_id, replaces),
            "tolerations": [t.to_dict() for t in spec.tolerations if not tolerates_startup_taint(t)],
            "containers": [container],
            "volumes": volumes,
        },
    }
    template["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] = spec_hash(template)
    return template


def render_deployment(
    namespace: str,
    name: str,
    uid: str,
    spec: SDWorkerSpec,
    runtime_id: str,
    replaces: tuple[str, ...] = (),
    *,
    paused: bool = False,
) -> dict[str, Any]:
    """The Deployment; ``paused`` holds a rollout's mix of old and new pods where it is."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(namespace, name, uid),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name)},
            # GPU nodes are usually full, so a surge pod would wait for a new node: replace one pod at a
            # time in place instead (replicas - 1 stay Ready; the PDB allows the same one disruption).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "paused": paused,
            "template": pod_template(name, spec, runtime_id, replaces),
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
