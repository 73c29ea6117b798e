"""The view parses each RuntimeDisk once per version, not on every read (issue 15, the 1000-node profile),
and the index keeps its own copy of each object without ``managedFields``.

The RuntimeDisks are the operator's own (``tests.unit.invalid_runtimedisks.produced_runtimedisk``, status
from ``api.transitions``). What the API server adds and the view keys on: ``metadata.uid`` on create and a
new ``metadata.resourceVersion`` on every write (k8s.io/apiserver ``pkg/registry/rest/create.go``
``FillObjectMetaSystemFields``; ``pkg/storage/etcd3/store.go`` sets the version from etcd's revision).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, cast

import kopf
import pytest

from sdworker import handlers
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.transitions import created
from sdworker.api.types import Phase
from sdworker.view import Indexes, View
from tests.unit.invalid_runtimedisks import produced_runtimedisk

Json = dict[str, Any]


def stored(manifest: Json, *, uid: str, version: int | None) -> Json:
    """``manifest`` as the API server returns it after ``version`` writes (None: no version at all)."""
    body = copy.deepcopy(manifest)
    body["metadata"]["uid"] = uid
    if version is not None:
        body["metadata"]["resourceVersion"] = str(version)
    return body


def view_of(index: dict[str, list[Json]]) -> View:
    view = View()
    view.bind(Indexes(sdworkers={}, nodes={}, runtimedisks=index, deployments={}))
    return view


def test_one_version_is_parsed_once_and_a_new_version_is_parsed_again() -> None:
    manifest = produced_runtimedisk(node="gpu-a")
    name = manifest["metadata"]["name"]
    index = {name: [stored(manifest, uid="u1", version=10)]}
    view = view_of(index)
    (first,) = view.runtimedisks()
    (again,) = view.runtimedisks()
    assert again is first  # the same parse, not a new one
    assert first.status.phase is Phase.PENDING  # no status written yet: the parser's default
    written = stored(manifest, uid="u1", version=11)
    written["status"] = created({}, message="Waiting for a disk", node_created="2026-11-30T04:00:00Z")
    index[name] = [written]
    (newer,) = view.runtimedisks()
    assert newer is not first
    assert newer.status.reason == "Created"
    assert newer.status.timings.node_created is not None
    assert view.runtimedisk(written) is newer  # the single-object read shares the cache


def test_a_recreated_runtimedisk_with_the_same_name_is_parsed_anew() -> None:
    manifest = produced_runtimedisk(node="gpu-b")
    name = manifest["metadata"]["name"]
    index = {name: [stored(manifest, uid="u1", version=5)]}
    view = view_of(index)
    (first,) = view.runtimedisks()
    deleting = stored(manifest, uid="u2", version=5)  # another object; versions are only unique per key
    deleting["metadata"]["deletionTimestamp"] = "2026-11-30T04:00:00Z"
    index[name] = [deleting]
    (second,) = view.runtimedisks()
    assert second is not first
    assert second.deleting
    assert not first.deleting


def test_a_body_without_a_version_is_parsed_every_time() -> None:
    manifest = produced_runtimedisk(node="gpu-c")
    name = manifest["metadata"]["name"]
    body = stored(manifest, uid="u1", version=None)
    view = view_of({name: [body]})
    (first,) = view.runtimedisks()
    body["metadata"]["deletionTimestamp"] = "2026-11-30T04:00:00Z"  # changed in place, same (no) version
    (second,) = view.runtimedisks()
    assert not first.deleting
    assert second.deleting


def test_a_malformed_version_is_skipped_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    good = produced_runtimedisk(node="gpu-d")
    bad = copy.deepcopy(produced_runtimedisk(node="gpu-e"))
    bad["spec"]["mountPath"] = "/somewhere/else"  # breaks the CRD's CEL rule on mountPath
    index = {
        good["metadata"]["name"]: [stored(good, uid="u1", version=1)],
        bad["metadata"]["name"]: [stored(bad, uid="u2", version=2)],
    }
    view = view_of(index)
    with caplog.at_level(logging.WARNING, logger="sdworker.view"):
        assert [rd.name for rd in view.runtimedisks()] == [good["metadata"]["name"]]
        assert [rd.name for rd in view.runtimedisks()] == [good["metadata"]["name"]]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert bad["metadata"]["name"] in warnings[0]
    assert "spec.mountPath" in warnings[0]


def test_parses_of_runtimedisks_gone_from_the_index_are_forgotten() -> None:
    disks = [produced_runtimedisk(node=f"gpu-{i}") for i in range(3)]
    index = {d["metadata"]["name"]: [stored(d, uid=f"u{i}", version=i + 1)] for i, d in enumerate(disks)}
    view = view_of(index)
    assert len(view.runtimedisks()) == 3
    kept = disks[0]["metadata"]["name"]
    for name in list(index):
        if name != kept:
            del index[name]
    (left,) = view.runtimedisks()
    assert left.name == kept
    assert list(view._parsed) == [kept]  # nothing held for the deleted ones


def test_the_index_keeps_a_private_copy_without_managed_fields() -> None:
    body = stored(produced_runtimedisk(node="gpu-f"), uid="u1", version=3)
    # The API server records each writer's fields (k8s.io/apiserver pkg/endpoints/handlers/fieldmanager).
    managed = [{"manager": "sdworker-operator", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    body["metadata"]["managedFields"] = managed
    snapshot = handlers._snapshot(kopf.Body(cast(kopf.RawBody, body)))
    assert "managedFields" not in snapshot["metadata"]
    assert {**snapshot, "metadata": {**snapshot["metadata"], "managedFields": managed}} == body
    assert parse_runtimedisk(snapshot) == parse_runtimedisk(body)
    body["spec"]["prefetch"].append("models/changed.safetensors")  # the live body changes; the copy not
    assert snapshot["spec"]["prefetch"] != body["spec"]["prefetch"]
