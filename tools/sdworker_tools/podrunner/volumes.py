"""A pod's volumes, set up as the kubelet's volume plugins do, from the pod spec and the node's host root.

- ``hostPath`` (pkg/volume/hostpath/host_path.go, ``checkTypeInternal``): the path is looked up under the
  node's host root (the directory its agent mounts runtimes into); a failed type check is the kubelet's
  ``MountVolume.SetUp failed for volume "<name>" : hostPath type check failed: <path> is not a directory``,
  the path as the node sees it. ``DirectoryOrCreate``/``FileOrCreate`` create it (0755/0644).
- ``emptyDir`` (pkg/volume/emptydir): here always a tmpfs in the pod's mount namespace, of ``sizeLimit``
  bytes when set, so writing past the limit fails with ENOSPC (the kubelet would evict the pod instead).
- ``secret`` (pkg/volume/secret, pkg/volume/util/atomic_writer.go): the files in a timestamped directory
  behind a ``..data`` symlink, one symlink per top-level path, root-owned with ``items[].mode`` or
  ``defaultMode`` (0644); with ``fsGroup`` group-owned by it with group read added and setgid directories
  (pkg/volume/volume_linux.go, ``changeFilePermission`` with the read-only mask). A missing Secret or key
  fails the mount unless ``optional``. ``configMap``, ``downwardAPI`` and ``projected`` volumes work the same
  way; a projected ``serviceAccountToken`` is requested from the TokenRequest API bound to the pod (as the
  kubelet's token manager does, pkg/kubelet/token), and not refreshed.

Anything else fails the mount with a message saying the pod runner does not support it.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdworker_tools.podrunner.spec import VOLUME_FIELD_PATHS, ConfigMapLookup, SecretLookup, parse_quantity

Json = dict[str, Any]
DEFAULT_MODE = 0o644
TokenRequest = Callable[[str, int], str]  # (audience, expirationSeconds) -> a token bound to the pod


class MountError(Exception):
    """A volume cannot be set up now; the kubelet records FailedMount and retries."""

    def __init__(self, volume: str, reason: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {reason}')


@dataclass(frozen=True)
class Payload:
    """The files of a Secret or ConfigMap volume: relative path -> (content, mode)."""

    files: dict[str, tuple[bytes, int]]
    fs_group: int | None


def _check_host_path(name: str, path: str, host: Path, kind: str) -> bool:
    """Return whether the source is a file; raise MountError as the type check would."""
    checks = {
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    if kind == "DirectoryOrCreate" and not host.exists():
        host.mkdir(mode=0o755, parents=True)
        kind = "Directory"
    elif kind == "FileOrCreate" and not host.exists():
        host.parent.mkdir(parents=True, exist_ok=True)
        host.touch(mode=0o644)
        kind = "File"
    elif kind in ("DirectoryOrCreate", "FileOrCreate"):
        kind = kind.removesuffix("OrCreate")
    if kind == "":
        if not host.exists():  # an untyped, missing hostPath is created as a directory by the runtime
            host.mkdir(mode=0o755, parents=True)
        return not host.is_dir()
    if kind not in checks:
        raise MountError(name, f"{kind} is an invalid volume type")
    test, message = checks[kind]
    try:
        mode = os.stat(host).st_mode
    except OSError:
        raise MountError(name, f"hostPath type check failed: {path} {message}") from None
    if not test(mode):
        raise MountError(name, f"hostPath type check failed: {path} {message}")
    return not stat.S_ISDIR(mode)


def _payload(
    name: str,
    source: Json,
    data: Mapping[str, bytes] | None,
    what: str,
    ref: str,
    fs_group: int | None,
) -> Payload:
    optional = bool(source.get("optional", False))
    if data is None:
        if optional:
            return Payload({}, fs_group)
        raise MountError(name, f'{what.lower()} "{ref}" not found')
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    files: dict[str, tuple[bytes, int]] = {}
    items = source.get("items")
    if items:
        for item in items:
            key = item["key"]
            if key not in data:
                if optional:
                    continue
                if what == "ConfigMap":
                    raise MountError(name, f"configmap references non-existent config key: {key}")
                raise MountError(name, f"references non-existent secret key: {key}")
            files[item["path"]] = (data[key], int(item.get("mode", default_mode)))
    else:
        files = {key: (value, default_mode) for key, value in data.items()}
    return Payload(files, fs_group)


def _downward(pod: Json, name: str, items: list[Json], default_mode: int) -> dict[str, tuple[bytes, int]]:
    files = {}
    for item in items:
        path = (item.get("fieldRef") or {}).get("fieldPath", "")
        if path not in VOLUME_FIELD_PATHS:
            raise MountError(
                name, f"downward API item {item.get('path')!r} is not supported by the sdworker pod runner"
            )
        files[item["path"]] = (VOLUME_FIELD_PATHS[path](pod).encode(), int(item.get("mode", default_mode)))
    return files


def _projected(
    pod: Json,
    name: str,
    projected: Json,
    secrets: SecretLookup,
    config_maps: ConfigMapLookup,
    token: TokenRequest,
    fs_group: int | None,
) -> Payload:
    default_mode = int(projected.get("defaultMode", DEFAULT_MODE))
    files: dict[str, tuple[bytes, int]] = {}
    for source in projected.get("sources", []):
        if "serviceAccountToken" in source:
            request = source["serviceAccountToken"]
            try:
                value = token(request.get("audience", ""), int(request.get("expirationSeconds", 3600)))
            except Exception as exc:
                raise MountError(name, f"failed to fetch token: {exc}") from None
            files[request["path"]] = (value.encode(), default_mode)
        elif "secret" in source or "configMap" in source:
            kind = "secret" if "secret" in source else "configMap"
            ref = {"defaultMode": default_mode, **source[kind]}
            data: Mapping[str, bytes] | None
            if kind == "secret":
                data = secrets(ref.get("name", ""))
            else:
                cm = config_maps(ref.get("name", ""))
                data = {k: v.encode() for k, v in cm.items()} if cm is not None else None
            what = "Secret" if kind == "secret" else "ConfigMap"
            files.update(_payload(name, ref, data, what, ref.get("name", ""), fs_group).files)
        elif "downwardAPI" in source:
            files.update(_downward(pod, name, source["downwardAPI"].get("items", []), default_mode))
        else:
            kinds = sorted(source)
            raise MountError(name, f"projected source {kinds} is not supported by the sdworker pod runner")
    return Payload(files, fs_group)


def plan(
    pod: Json,
    host_root: Path,
    secrets: SecretLookup,
    config_maps: ConfigMapLookup,
    token: TokenRequest,
) -> tuple[list[Json], dict[str, Payload]]:
    """(the sandbox's volume list, the Secret/ConfigMap payloads to write) or MountError."""
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    fs_group = int(fs_group) if fs_group is not None else None
    volumes: list[Json] = []
    payloads: dict[str, Payload] = {}
    for volume in pod["spec"].get("volumes", []):
        name = volume["name"]
        if "hostPath" in volume:
            path = volume["hostPath"]["path"]
            host = host_root / path.lstrip("/")
            is_file = _check_host_path(name, path, host, volume["hostPath"].get("type") or "")
            volumes.append({"name": name, "kind": "hostPath", "source": str(host), "file": is_file})
        elif "emptyDir" in volume:
            limit = (volume["emptyDir"] or {}).get("sizeLimit")
            size = parse_quantity(limit) if limit is not None else None
            volumes.append({"name": name, "kind": "emptyDir", "size": size})
        elif "secret" in volume:
            ref = volume["secret"].get("secretName", "")
            payloads[name] = _payload(name, volume["secret"], secrets(ref), "Secret", ref, fs_group)
            volumes.append({"name": name, "kind": "secret"})
        elif "configMap" in volume:
            ref = volume["configMap"].get("name", "")
            cm = config_maps(ref)
            data = {k: v.encode() for k, v in cm.items()} if cm is not None else None
            payloads[name] = _payload(name, volume["configMap"], data, "ConfigMap", ref, fs_group)
            volumes.append({"name": name, "kind": "secret"})
        elif "projected" in volume:
            payloads[name] = _projected(pod, name, volume["projected"], secrets, config_maps, token, fs_group)
            volumes.append({"name": name, "kind": "secret"})
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            files = _downward(
                pod, name, source.get("items", []), int(source.get("defaultMode", DEFAULT_MODE))
            )
            payloads[name] = Payload(files, fs_group)
            volumes.append({"name": name, "kind": "secret"})
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise MountError(name, f"volume type {kinds} is not supported by the sdworker pod runner")
    return volumes, payloads


def write_payload(directory: Path, payload: Payload) -> None:
    """Write the files as the kubelet's AtomicWriter lays them out, with the kubelet's ownership and modes."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + os.urandom(4).hex()
    data_dir = directory / stamp
    data_dir.mkdir(mode=0o755)
    top_level = set()
    for rel, (content, mode) in payload.files.items():
        target = data_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_bytes(content)
        target.chmod(mode)
        top_level.add(rel.split("/", 1)[0])
    (directory / "..data").symlink_to(stamp)
    for name in sorted(top_level):
        (directory / name).symlink_to(f"..data/{name}")
    if payload.fs_group is None:
        return
    for path in [directory, *sorted(directory.rglob("*"))]:
        os.lchown(path, -1, payload.fs_group)
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode) | 0o440
        if path.is_dir():
            mode |= stat.S_ISGID | 0o110
        path.chmod(mode)
