"""Deterministic names for everything sdworker creates, shared by the operator and the node agent.

Both sides must derive the same RuntimeDisk name, GCE disk name, device name, mount path and node labels from
the same inputs without talking to each other, so the functions live here, pure and dependency-free (the agent
imports this module). Every function returns a name that is valid for the place it is used, for any input:
long or odd inputs are shortened and made unique with a hash of the original, never rejected.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from sdworker.api.constants import MOUNT_ROOT, RUNTIME_READY_LABEL_PREFIX

RUNTIME_ID_MAX: Final = 40
RFC1035_MAX: Final = 63
SUBDOMAIN_MAX: Final = 253
POOL_INDEX_LIMIT: Final = 1_000_000
LABEL_VALUE_MAX: Final = 63

RFC1035_RE: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# A Kubernetes label value (empty, or alphanumerics with - _ . inside), at most 63 characters.
LABEL_VALUE_RE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
SUBDOMAIN_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_HASH_LEN: Final = 8
_INVALID_CHARS: Final = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL_CHARS: Final = re.compile(r"[^-A-Za-z0-9_.]+")
_DASHES: Final = re.compile(r"-{2,}")


def short_hash(text: str, length: int = _HASH_LEN) -> str:
    """The first ``length`` hex digits of sha256(text): stable across processes and Python versions."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _slug(text: str, max_len: int) -> str:
    """Lower-case letters, digits and single dashes, starting with a letter, at most ``max_len`` long.

    May be empty; callers always append a hash, which keeps the result unique and non-empty.
    """
    slug = _DASHES.sub("-", _INVALID_CHARS.sub("-", text.lower()))
    slug = slug.lstrip("-0123456789")[: max(max_len, 0)]
    return slug.rstrip("-")


def runtime_id(image: str) -> str:
    """A short id for a runtime image: ``<slug of the image or family name>-<8 hex of sha256(image)>``.

    ``image`` is the concrete image path (``projects/P/global/images/NAME``) the disk is created from, so a
    family that moves to a new image gets a new id, and disks, mounts and pods move with it. The result is an
    RFC 1035 label of at most 40 characters, which leaves room for the prefixes added below.
    """
    name = image.rstrip("/").rsplit("/", 1)[-1]
    slug = _slug(name, RUNTIME_ID_MAX - _HASH_LEN - 1) or "rt"
    return f"{slug}-{short_hash(image)}"


def runtimedisk_name(node: str, runtime: str) -> str:
    """The RuntimeDisk object name: ``<node>-<runtime-id>`` when that is a valid name, else a hashed form.

    Node names are DNS subdomains of up to 253 characters, so the plain form can be too long; then the node
    part is shortened and followed by a hash of the full node name, keeping names unique per node.
    """
    plain = f"{node}-{runtime}"
    if len(plain) <= SUBDOMAIN_MAX and SUBDOMAIN_RE.fullmatch(plain):
        return plain
    tail = f"-{short_hash(f'{node}/{runtime}')}-{_slug(runtime, RUNTIME_ID_MAX) or 'rt'}"
    head = _slug(node, SUBDOMAIN_MAX - len(tail)) or "node"
    return f"{head}{tail}"


def disk_name(node: str, runtime: str) -> str:
    """The per-node GCE disk name: ``sdw-<hash(node)>-<runtime-id>`` (RFC 1035, at most 63 characters).

    GCE instance names are unique per zone and project and GKE names nodes after them, so the pair (node,
    runtime) never collides across clusters that share a project.
    """
    return _bounded(f"sdw-{short_hash(node)}-{runtime}")


def pool_disk_name(zone: str, runtime: str, index: int, *, cluster: str = "") -> str:
    """The name of warm-pool disk number ``index`` for a runtime in a zone.

    The hash covers the zone and the cluster so two clusters sharing a project keep separate pools.
    """
    if not 0 <= index < POOL_INDEX_LIMIT:
        raise ValueError(f"pool disk index {index} is outside [0, {POOL_INDEX_LIMIT})")
    return _bounded(f"sdwp-{short_hash(f'{cluster}/{zone}')}-{runtime}", suffix=f"-{index}")


def shared_disk_name(zone: str, runtime: str, *, cluster: str = "") -> str:
    """The name of the one READ_ONLY multi-attach disk per (zone, runtime) in SharedReadOnly mode."""
    return _bounded(f"sdws-{short_hash(f'{cluster}/{zone}')}-{runtime}")


def device_name(runtime: str) -> str:
    """The GCE device name of a runtime disk on its instance; the agent finds it at by-id/google-<name>.

    One disk per runtime per instance, so the runtime id alone is unique on the instance.
    """
    return _bounded(f"sdw-{runtime}")


def mount_path(runtime: str, root: str = MOUNT_ROOT) -> str:
    """Where the agent mounts a runtime on the host and where SD pods find it through hostPath."""
    if not RFC1035_RE.fullmatch(runtime):
        # A '/' or '..' here would point a read-write mount or a hostPath outside the mount root.
        raise ValueError(f"runtime id {runtime!r} is not an RFC 1035 label")
    return f"{root.rstrip('/')}/{runtime}"


def node_label_value(node: str) -> str:
    """The ``sdworker.dev/node`` label value of a node's RuntimeDisks, valid for any node name.

    A label value holds at most 63 characters while a node name may have 253, so a longer name becomes its
    first characters and a hash of the whole name (deterministic, so the operator that labels and the agent
    that selects agree). The label only narrows the agent's watch; ``spec.nodeName`` keeps the full name, and
    the agent and the admission policy compare that one exactly.
    """
    if len(node) <= LABEL_VALUE_MAX and LABEL_VALUE_RE.fullmatch(node):
        return node
    tail = short_hash(node)
    head = _INVALID_LABEL_CHARS.sub("-", node)[: LABEL_VALUE_MAX - len(tail) - 1]
    head = head.lstrip("-_.").rstrip("-_.")
    return f"{head}-{tail}" if head else tail


def runtime_ready_label(runtime: str) -> str:
    """The node label key the agent sets to ``ready`` once the runtime is mounted and verified."""
    return f"{RUNTIME_READY_LABEL_PREFIX}{_bounded(runtime, limit=RFC1035_MAX - len('runtime.'))}"


def child_name(sdworker: str) -> str:
    """The name of the Deployment, Service and PodDisruptionBudget of an SDWorker.

    Services need an RFC 1035 label, and the name doubles as a label value (at most 63 characters); the CRD
    already restricts SDWorker names to that, so this returns the name unchanged unless an older object
    slipped through, in which case it is shortened and hashed.
    """
    if len(sdworker) <= RFC1035_MAX and RFC1035_RE.fullmatch(sdworker):
        return sdworker
    return _bounded(_slug(sdworker, RFC1035_MAX) or "sdw", suffix=f"-{short_hash(sdworker)}")


def _bounded(name: str, *, suffix: str = "", limit: int = RFC1035_MAX) -> str:
    """Make ``name + suffix`` an RFC 1035 label of at most ``limit`` characters.

    Valid names that fit are returned as they are. Others are slugged and truncated, and then carry a hash of
    the original so that truncation cannot make two names equal.
    """
    candidate = f"{name}{suffix}"
    if len(candidate) <= limit and RFC1035_RE.fullmatch(candidate):
        return candidate
    tail = f"-{short_hash(candidate)}{suffix}"
    head = _slug(name, limit - len(tail)) or "x"
    return f"{head}{tail}"[:limit]
