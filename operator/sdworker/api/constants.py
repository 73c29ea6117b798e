"""The fixed vocabulary of the sdworker API: group, kinds, finalizers, taints, labels, the CEL rules' words.

It exists so that the operator, the node agent, the parser and the tests agree on every string by importing
them from one place. Structure (types, bounds, patterns, enums) is not repeated here: the parsers read it
from the CRD schema itself (``sdworker.api.schema``). What is here is what Python code needs by name: the
CRD's defaults (for building typed objects; a unit test compares them with the CRD), and the operands and
messages of the CEL rules, which the parsers write out by hand (a unit test finds each message in the CRD).
"""

from __future__ import annotations

from typing import Final

from sdworker import runtime_layout as layout

GROUP: Final = "sdworker.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

SDWORKER_KIND: Final = "SDWorker"
SDWORKER_PLURAL: Final = "sdworkers"
RUNTIMEDISK_KIND: Final = "RuntimeDisk"
RUNTIMEDISK_PLURAL: Final = "runtimedisks"

# The operator holds this until the cloud disk is detached and deleted; the agent holds the other until it
# has unmounted, so the operator never detaches a disk the node still has mounted.
FINALIZER_CLOUD_DISK: Final = f"{GROUP}/cloud-disk"
FINALIZER_UNMOUNT: Final = f"{GROUP}/unmount"

# cluster-autoscaler treats taints with this prefix as startup taints: it still simulates pods onto a new
# node, so scale-up works, while the scheduler keeps SD pods off until the agent removes it.
STARTUP_TAINT_KEY: Final = "startup-taint.cluster-autoscaler.kubernetes.io/sdworker"
STARTUP_TAINT_VALUE: Final = "pending"
STARTUP_TAINT_EFFECT: Final = "NoSchedule"

LABEL_SDWORKER: Final = f"{GROUP}/sdworker"
LABEL_APP_NAME: Final = "app.kubernetes.io/name"
LABEL_APP_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_APP_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
APP_NAME: Final = "stable-diffusion-webui"
MANAGED_BY: Final = "sdworker"
# The agent sets <prefix><runtime-id>=ready on a node once that runtime is mounted and verified.
# On RuntimeDisks, so the agent can watch only its own node's and tools can select by runtime.
LABEL_NODE: Final = f"{GROUP}/node"
LABEL_RUNTIME_ID: Final = f"{GROUP}/runtime-id"
RUNTIME_READY_LABEL_PREFIX: Final = f"{GROUP}/runtime."
RUNTIME_READY_VALUE: Final = "ready"

ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANNOTATION_RUNTIME_ID: Final = f"{GROUP}/runtime-id"
# On an SD pod template: the runtimes it replaced, whose nodes it may join only once its own runtime is ready.
ANNOTATION_REPLACES: Final = f"{GROUP}/replaces-runtimes"
# On an SDWorker (value "true"): hold a runtime rollout where it is / keep serving the runtime in status
# when the followed image family moves (README "Rolling out a new runtime").
ANNOTATION_ROLLOUT_PAUSED: Final = f"{GROUP}/rollout-paused"
ANNOTATION_PIN_RUNTIME: Final = f"{GROUP}/pin-runtime"

MOUNT_ROOT: Final = "/mnt/sdworker"
GPU_RESOURCE: Final = "nvidia.com/gpu"

# Secret keys read from webui.authSecretRef.
AUTH_KEY_GRADIO: Final = layout.AUTH_KEY_GRADIO
AUTH_KEY_API: Final = layout.AUTH_KEY_API

# --- the CRDs' defaults (crds/; a unit test compares them) and the CEL rules' operands ---

DEFAULT_REPLICAS: Final = 1
# No runtime image is smaller than this; a smaller disk cannot be created from it (CEL on diskSizeGb).
DISK_SIZE_MIN_GB: Final = 10
DEFAULT_DISK_SIZE_GB: Final = 50
DEFAULT_PORT: Final = 7860
DEFAULT_MODEL: Final = "v1-5-pruned-emaonly.safetensors"
# metadata.name of an SDWorker (CEL on the object): a DNS-1035 label.
NAME_MAX_LENGTH: Final = 63

DISK_TYPES: Final = ("pd-balanced", "pd-ssd", "hyperdisk-balanced", "hyperdisk-ml")
DEFAULT_DISK_TYPE: Final = "pd-balanced"
MODES: Final = ("PerNode", "SharedReadOnly")
DEFAULT_MODE: Final = "PerNode"

MODEL_PATTERN: Final = r"^[^/]+[.](safetensors|ckpt)$"
DNS1123_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1035_LABEL_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Flags the operator sets itself; a user copy would fight them (ports, paths) or undo the fast start.
OWNED_FLAGS: Final = (
    "--port",
    "--listen",
    "--data-dir",
    "--ckpt",
    # The runtime's read-only model folders (--ckpt-dir, --lora-dir, ...) and the fast-start flags.
    *(flag for flag, _ in layout.MODEL_DIR_FLAGS),
    *layout.FAST_START_FLAGS,
)
# Flags that carry credentials: they would land in the pod spec, readable by anyone who can get pods.
CREDENTIAL_FLAGS: Final = ("--gradio-auth", "--gradio-auth-path", "--api-auth")
# Flags that publish webui through a public tunnel (modules/cmd_args.py v1.10.1: gradio's share link and
# ngrok, whose --ngrok value is an authtoken and whose --ngrok-options may carry basic_auth credentials).
PUBLIC_FLAGS: Final = ("--share", "--ngrok", "--ngrok-region", "--ngrok-options")
# Turns off every extension, built-in ones included, and with them the sdworker extension that enforces API
# credentials and readiness (modules/extensions.py; --disable-extra-extensions keeps built-ins, so is fine).
EXTENSIONS_OFF_FLAGS: Final = ("--disable-all-extensions",)
INSECURE_EXTENSIONS_FLAG: Final = "--enable-insecure-extension-access"
# webui flags that are exact names and also prefixes of a forbidden flag; argparse matches exact names first.
PREFIX_SAFE_FLAGS: Final = ("--api",)

MESSAGE_DISK_TOO_SMALL: Final = (
    f"diskSizeGb must not be smaller than the runtime image minimum of {DISK_SIZE_MIN_GB} GB"
)
MESSAGE_WARM_POOL_SHARED: Final = (
    "warmPool.size must be 0 when mode is SharedReadOnly (one shared disk per zone needs no pool)"
)
MESSAGE_PREFETCH_EMPTY: Final = "prefetch entries must not be empty"
MESSAGE_PREFETCH_ABSOLUTE: Final = "prefetch entries must be relative paths inside the runtime root"
MESSAGE_PREFETCH_DOTDOT: Final = "prefetch entries must not contain a '..' segment"
MESSAGE_MODEL: Final = "model must be a file name (no '/') ending in .safetensors or .ckpt"
MESSAGE_INSECURE: Final = (
    "args must not contain --enable-insecure-extension-access unless allowInsecureExtensionAccess is true"
)
MESSAGE_CREDENTIALS: Final = (
    "args must not carry credentials (--gradio-auth, --gradio-auth-path, --api-auth): "
    "put them in the Secret named by authSecretRef"
)
MESSAGE_OWNED_FLAG: Final = (
    "args must not set flags the operator owns (--port, --listen, --data-dir, --ckpt-dir, --ckpt, the model "
    "folders --lora-dir, --vae-dir, --embeddings-dir, --hypernetwork-dir and the "
    "--skip-*/--no-download-sd-model/--no-hashing start-up flags): use webui.port and webui.model"
)
MESSAGE_PUBLIC: Final = (
    "args must not open webui to the internet (--share, --ngrok, --ngrok-region, --ngrok-options): "
    "expose the Service instead"
)
MESSAGE_EXTENSIONS_OFF: Final = (
    "args must not contain --disable-all-extensions: it turns off the built-in sdworker extension that "
    "enforces API credentials and readiness (use --disable-extra-extensions)"
)
MESSAGE_GPU: Final = "resources.limits must request nvidia.com/gpu of at least 1 (a whole number)"
MESSAGE_TOLERATION_STARTUP: Final = (
    "tolerations must not tolerate the sdworker startup taint: pods must wait until the runtime is mounted"
)
MESSAGE_TOLERATION_WILDCARD: Final = (
    "a toleration with an empty key matches every taint, including the sdworker startup taint: set key, "
    "or limit effect to PreferNoSchedule or NoExecute"
)
MESSAGE_TOLERATION_EXISTS_VALUE: Final = "value must be empty when operator is Exists"
MESSAGE_TOLERATION_EMPTY_KEY: Final = "operator must be Exists when key is empty"
MESSAGE_TOLERATION_SECONDS: Final = "tolerationSeconds is only valid with effect NoExecute"
MESSAGE_NAME: Final = (
    "metadata.name must be a DNS-1035 label of at most 63 characters (lower-case letters, digits and '-', "
    "starting with a letter): it names the Service and is used as a label value"
)

# --- disk type and mode pairs GCE can serve (mirrored in both CRDs) ---
# SharedReadOnly attaches one disk READ_ONLY to every node of a zone. GCE allows that for Persistent Disk
# and for Hyperdisk ML created with access mode READ_ONLY_MANY; hyperdisk-balanced cannot be attached
# read-only at all (Compute Engine, "Share disks between VMs").
SHARED_READ_ONLY_DISK_TYPES: Final = ("pd-balanced", "pd-ssd", "hyperdisk-ml")
MESSAGE_SHARED_DISK_TYPE: Final = (
    "diskType must be one GCE can attach read-only to many VMs when mode is SharedReadOnly "
    "(pd-balanced, pd-ssd or hyperdisk-ml): hyperdisk-balanced cannot be attached read-only"
)

# --- the CEL rule on a RuntimeDisk's mountPath, which the privileged node agent mounts at ---
RUNTIMEDISK_MESSAGE_MOUNT_PATH: Final = (
    "mountPath must be /mnt/sdworker/<runtimeId>: the node agent mounts a runtime there and nowhere else"
)
