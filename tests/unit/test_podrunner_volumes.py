"""Volume set-up in the pod runner: hostPath type checks, the atomic-writer layout, paths kept in the root."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sdworker_tools.podrunner import volumes
from sdworker_tools.podrunner.sandbox import in_root

Json = dict[str, Any]


def _pod(*vols: Json, fs_group: int | None = None) -> Json:
    sc = {"fsGroup": fs_group} if fs_group is not None else {}
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"b": "2", "a": 'say "hi"'}},
        "spec": {"securityContext": sc, "volumes": list(vols), "containers": []},
    }


def _plan(pod: Json, root: Path, secrets: dict[str, dict[str, bytes]] | None = None) -> Any:
    config_maps: dict[str, dict[str, str]] = {}
    return volumes.plan(
        pod, root, (secrets or {}).get, config_maps.get, lambda aud, exp: f"token-{aud}-{exp}"
    )


def test_host_path_type_checks_use_the_kubelets_messages(tmp_path: Path) -> None:
    directory = {"name": "rt", "hostPath": {"path": "/var/lib/rt", "type": "Directory"}}
    with pytest.raises(volumes.MountError) as err:
        _plan(_pod(directory), tmp_path)
    prefix = 'MountVolume.SetUp failed for volume "rt" : '
    assert str(err.value) == prefix + "hostPath type check failed: /var/lib/rt is not a directory"
    (tmp_path / "var/lib").mkdir(parents=True)
    (tmp_path / "var/lib/rt").write_text("a file")
    with pytest.raises(volumes.MountError, match="is not a directory"):
        _plan(_pod(directory), tmp_path)
    created = {"name": "c", "hostPath": {"path": "/srv/new", "type": "DirectoryOrCreate"}}
    planned, _ = _plan(_pod(created), tmp_path)
    assert planned == [{"name": "c", "kind": "hostPath", "source": str(tmp_path / "srv/new"), "file": False}]
    assert stat.S_IMODE((tmp_path / "srv/new").stat().st_mode) == 0o755
    with pytest.raises(volumes.MountError, match="Bogus is an invalid volume type"):
        _plan(_pod({"name": "x", "hostPath": {"path": "/x", "type": "Bogus"}}), tmp_path)


def test_empty_dir_size_and_unsupported_volumes(tmp_path: Path) -> None:
    planned, _ = _plan(_pod({"name": "d", "emptyDir": {"sizeLimit": "1Mi"}}), tmp_path)
    assert planned == [{"name": "d", "kind": "emptyDir", "size": 2**20}]
    with pytest.raises(volumes.MountError, match=r"volume type \['nfs'\] is not supported"):
        _plan(_pod({"name": "n", "nfs": {"server": "x", "path": "/"}}), tmp_path)


def test_secret_items_modes_and_missing_keys(tmp_path: Path) -> None:
    secret = {
        "name": "s",
        "secret": {"secretName": "auth", "defaultMode": 0o440, "items": [{"key": "api", "path": "api"}]},
    }
    _, payloads = _plan(_pod(secret), tmp_path, {"auth": {"api": b"u:p", "other": b"x"}})
    assert payloads["s"].files == {"api": (b"u:p", 0o440)}
    with pytest.raises(volumes.MountError, match="references non-existent secret key: api"):
        _plan(_pod(secret), tmp_path, {"auth": {"other": b"x"}})
    with pytest.raises(volumes.MountError, match='secret "auth" not found'):
        _plan(_pod(secret), tmp_path)
    optional = {"name": "o", "secret": {"secretName": "auth", "optional": True}}
    assert _plan(_pod(optional), tmp_path)[1]["o"].files == {}


def test_projected_and_downward_api_volumes(tmp_path: Path) -> None:
    projected = {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ],
        },
    }
    downward = {
        "name": "info",
        "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
    }
    _, payloads = _plan(_pod(projected, downward), tmp_path)
    assert payloads["kube-api-access"].files == {
        "token": (b"token--3607", 0o644),
        "namespace": (b"ns", 0o644),
    }
    assert payloads["info"].files == {"labels": (b'a="say \\"hi\\""\nb="2"', 0o644)}


def test_payload_is_written_in_the_atomic_writer_layout_with_fs_group(tmp_path: Path) -> None:
    group = os.getgid()
    volumes.write_payload(tmp_path, volumes.Payload({"api": (b"u:p", 0o400), "dir/x": (b"1", 0o600)}, group))
    data = tmp_path / "..data"
    assert data.is_symlink()
    assert os.readlink(data).startswith("..")
    assert os.readlink(tmp_path / "api") == "..data/api"
    assert (tmp_path / "api").read_bytes() == b"u:p"
    real = (tmp_path / "api").resolve()
    assert stat.S_IMODE(real.stat().st_mode) == 0o440  # group read added for fsGroup
    assert real.stat().st_gid == group
    assert stat.S_IMODE((tmp_path / "dir").resolve().stat().st_mode) & stat.S_ISGID


def test_paths_resolve_inside_the_container_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")  # absolute: must stay within the root
    (root / "up").symlink_to("../../..")
    assert in_root(root, "/var/run/secrets/x") == root / "run" / "secrets" / "x"
    assert in_root(root, "/up/etc") == root / "etc"
    assert in_root(root, "/../../etc/passwd") == root / "etc" / "passwd"
