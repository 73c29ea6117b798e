"""RuntimeDisks as test data: valid ones from the operator's own producer, and mutations that break them.

The node agent is privileged and acts on a RuntimeDisk's spec (it mounts at ``mountPath``, opens
``google-<deviceName>``, reads the ``prefetch`` paths, verifies ``imageDigest``, serves ``nodeName``), so
anything that can write a RuntimeDisk must not be able to steer it. The same table drives two tests: the
parser (what the operator and the agent read with) rejects every case (unit), and the API server with the
CRD installed rejects it too (integration), each naming the field. Valid objects are never hand-written:
their spec is what ``sdworker.domain.placement.place`` produces for a node and an SDWorker, exactly as the
operator creates it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from typing import Any, NamedTuple

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.parse import parse_sdworker
from sdworker.api.types import ResolvedImage
from sdworker.controller import resolve_as_written
from sdworker.domain.placement import NodeInfo, place, runtimedisk_manifest
from tests.unit.invalid_specs import Mutation, both, delete, set_, valid_sdworker

Manifest = dict[str, Any]

PROJECT = "sdworker-demo"
ZONE = "us-central1-a"
NODE = "gke-sd-gpu-pool-1a2b3c4d-x7k2"
IMAGE = f"projects/{PROJECT}/global/images/sd-runtime-v3"
DIGEST = "sha256:" + hashlib.sha256(b"sd-runtime-v3 manifest").hexdigest()


class Case(NamedTuple):
    id: str
    mutate: Mutation
    field: str
    """A substring of the rejected field's path, e.g. ``spec.mountPath``."""
    message: str
    """A substring of the rejection message, in both the parser's and the API server's words."""


class ValidCase(NamedTuple):
    id: str
    runtime: dict[str, Any]
    """Changes to the SDWorker's ``spec.runtime`` the RuntimeDisk is produced from."""
    node: str = NODE
    cloud: bool = True
    """False: the operator runs with ``--cloud=none`` and takes the image as written, without a digest."""


def produced_runtimedisk(
    runtime: dict[str, Any] | None = None, *, node: str = NODE, cloud: bool = True, cluster: str = "prod"
) -> Manifest:
    """The RuntimeDisk the operator creates for ``node`` and the example SDWorker (``runtime`` changed).

    With ``cloud`` the image resolves to ``IMAGE`` with ``DIGEST``, as the cloud answers for an image made by
    ``sdworker image publish``; without, it is the operator's own ``resolve_as_written``.
    """
    manifest = valid_sdworker()
    manifest["spec"]["runtime"].update(runtime or {})
    worker = parse_sdworker(manifest)
    written = worker.spec.runtime.image
    resolved = ResolvedImage(IMAGE, DIGEST) if cloud else asyncio.run(resolve_as_written(written))
    # GKE names a node after its VM; a node name that is no VM name gets one, as a providerID must.
    instance = node if naming.RFC1035_RE.fullmatch(node) and len(node) <= 63 else "gke-sd-gpu-vm-1"
    info = NodeInfo(node, dict(worker.spec.node_selector), f"gce://{PROJECT}/{ZONE}/{instance}")
    placement = place([info], [worker], {written: resolved}, cluster=cluster)
    ((name, spec),) = placement.desired.items()
    # The owner Node's uid is the API server's to assign; any uid does for validation.
    return runtimedisk_manifest(name, node, "00000000-0000-4000-8000-000000000001", spec.to_dict())


def mutated(mutation: Mutation) -> Manifest:
    manifest = copy.deepcopy(produced_runtimedisk())
    mutation(manifest)
    return manifest


def _with_runtime_id(mutation: Mutation) -> Mutation:
    """Apply ``mutation`` and keep mountPath consistent with the runtime id, so only the mutation is wrong."""

    def run(manifest: Manifest) -> None:
        mutation(manifest)
        manifest["spec"]["mountPath"] = f"{c.MOUNT_ROOT}/{manifest['spec']['runtimeId']}"

    return run


def _rid() -> str:
    return str(produced_runtimedisk()["spec"]["runtimeId"])


_MATCH = "should match"
_TOO_LONG = "Too long"

INVALID_RUNTIMEDISKS: tuple[Case, ...] = (
    Case("spec-missing", delete("spec"), "spec", "Required value"),
    Case("node-name-missing", delete("spec.nodeName"), "spec.nodeName", "Required value"),
    Case("node-name-uppercase", set_("spec.nodeName", "GPU_Node"), "spec.nodeName", _MATCH),
    Case("node-name-path", set_("spec.nodeName", "../other-node"), "spec.nodeName", _MATCH),
    Case("node-name-too-long", set_("spec.nodeName", "n" * 254), "spec.nodeName", _TOO_LONG),
    Case("zone-path", set_("spec.zone", "us-central1-a/../b"), "spec.zone", _MATCH),
    Case("instance-uppercase", set_("spec.instance", "Node-1"), "spec.instance", _MATCH),
    Case("project-too-short", set_("spec.project", "p"), "spec.project", _MATCH),
    Case("image-not-gce", set_("spec.image", "gcr.io/p/runtime:latest"), "spec.image", _MATCH),
    Case("image-digest-not-sha256", set_("spec.imageDigest", "md5:0123"), "spec.imageDigest", _MATCH),
    Case("image-digest-short", set_("spec.imageDigest", "sha256:abc"), "spec.imageDigest", _MATCH),
    Case(
        "image-digest-upper-case",
        set_("spec.imageDigest", "sha256:" + "AB" * 32),
        "spec.imageDigest",
        _MATCH,
    ),
    Case(
        "image-digest-trailing-text",
        set_("spec.imageDigest", DIGEST + " --other"),
        "spec.imageDigest",
        _TOO_LONG,
    ),
    Case(
        "runtime-id-uppercase",
        _with_runtime_id(set_("spec.runtimeId", "Runtime")),
        "spec.runtimeId",
        _MATCH,
    ),
    Case(
        "runtime-id-too-long",
        _with_runtime_id(set_("spec.runtimeId", "r" * 41)),
        "spec.runtimeId",
        _TOO_LONG,
    ),
    Case("disk-name-path", set_("spec.diskName", "sdw-x/../boot"), "spec.diskName", _MATCH),
    Case("device-name-path", set_("spec.deviceName", "../../sda"), "spec.deviceName", _MATCH),
    Case("device-name-boot-slash", set_("spec.deviceName", "persistent-disk-0/x"), "spec.deviceName", _MATCH),
    Case("device-name-too-long", set_("spec.deviceName", "d" * 64), "spec.deviceName", _TOO_LONG),
    # A pattern's '$' is the end of the text (Go), not also "before a final newline" (Python's re).
    Case("device-name-trailing-newline", set_("spec.deviceName", "sdw-x\n"), "spec.deviceName", _MATCH),
    Case("node-name-trailing-newline", set_("spec.nodeName", NODE + "\n"), "spec.nodeName", _MATCH),
    Case("disk-type-unknown", set_("spec.diskType", "floppy"), "spec.diskType", "Unsupported value"),
    Case("mode-unknown", set_("spec.mode", "Shared"), "spec.mode", "Unsupported value"),
    Case(
        "shared-read-only-hyperdisk-balanced",
        both(set_("spec.mode", "SharedReadOnly"), set_("spec.diskType", "hyperdisk-balanced")),
        "spec.diskType",
        "attach read-only to many VMs when mode is SharedReadOnly",
    ),
    Case(
        "disk-size-below-image", set_("spec.diskSizeGb", 5), "spec.diskSizeGb", "greater than or equal to 10"
    ),
    Case("mount-path-missing", delete("spec.mountPath"), "spec.mountPath", "Required value"),
    Case("mount-path-host-etc", set_("spec.mountPath", "/etc"), "spec.mountPath", _MATCH),
    Case("mount-path-root", set_("spec.mountPath", "/"), "spec.mountPath", _MATCH),
    Case(
        "mount-path-traversal",
        set_("spec.mountPath", "/mnt/sdworker/../../usr"),
        "spec.mountPath",
        _MATCH,
    ),
    Case("mount-path-relative", set_("spec.mountPath", "mnt/sdworker/x"), "spec.mountPath", _MATCH),
    Case("mount-path-the-root-itself", set_("spec.mountPath", "/mnt/sdworker"), "spec.mountPath", _MATCH),
    Case(
        "mount-path-nested",
        set_("spec.mountPath", f"/mnt/sdworker/{_rid()}/x"),
        "spec.mountPath",
        _MATCH,
    ),
    Case(
        "mount-path-another-runtime",
        set_("spec.mountPath", "/mnt/sdworker/another-runtime"),
        "spec.mountPath",
        "mountPath must be /mnt/sdworker/<runtimeId>",
    ),
    Case(
        "mount-path-too-long",
        set_("spec.mountPath", "/mnt/sdworker/" + "m" * 41),
        "spec.mountPath",
        _TOO_LONG,
    ),
    Case("prefetch-absolute", set_("spec.prefetch", ["/etc/shadow"]), "spec.prefetch[0]", "relative paths"),
    Case(
        "prefetch-parent-segment",
        set_("spec.prefetch", ["models/../../../etc/shadow"]),
        "spec.prefetch[0]",
        "'..' segment",
    ),
    Case("prefetch-leading-parent", set_("spec.prefetch", ["../host"]), "spec.prefetch[0]", "'..' segment"),
    Case("prefetch-only-parent", set_("spec.prefetch", [".."]), "spec.prefetch[0]", "'..' segment"),
    Case("prefetch-trailing-parent", set_("spec.prefetch", ["a/.."]), "spec.prefetch[0]", "'..' segment"),
    Case("prefetch-empty-entry", set_("spec.prefetch", ["ok", ""]), "spec.prefetch[1]", "must not be empty"),
    Case("prefetch-duplicate", set_("spec.prefetch", ["a", "a"]), "spec.prefetch[1]", "Duplicate value"),
    Case(
        "prefetch-too-many",
        set_("spec.prefetch", [f"models/{i}" for i in range(65)]),
        "spec.prefetch",
        "must have at most 64 items",
    ),
    Case("prefetch-entry-too-long", set_("spec.prefetch", ["p" * 1025]), "spec.prefetch[0]", _TOO_LONG),
)

# What the operator produces must be accepted: the rules above must not catch any of it.
VALID_RUNTIMEDISKS: tuple[ValidCase, ...] = (
    ValidCase("per-node", {}),
    ValidCase("shared-hyperdisk-ml", {"mode": "SharedReadOnly", "diskType": "hyperdisk-ml"}),
    ValidCase("shared-pd-ssd", {"mode": "SharedReadOnly", "diskType": "pd-ssd"}),
    ValidCase("per-node-hyperdisk-balanced", {"diskType": "hyperdisk-balanced"}),
    ValidCase("no-prefetch", {"prefetch": []}),
    ValidCase("prefetch-dots-in-names", {"prefetch": ["models/a..b", ".cache/x", "a/./b"]}),
    ValidCase("no-cloud-family-image-no-digest", {}, cloud=False),
    ValidCase("no-cloud-concrete-image", {"image": IMAGE}, cloud=False),
    # A dotted node name as long as the node label on the RuntimeDisk allows (label values: 63 bytes).
    ValidCase("dotted-node-name", {}, node=("gke." * 14) + "node-x1"),
)
