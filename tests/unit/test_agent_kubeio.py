"""The agent's watch stream parsing: events pass through, an expired resourceVersion asks for a re-list."""

from __future__ import annotations

import pytest

from sdworker.kube.client import KubeError
from sdworker_agent import kubeio


def test_events_and_bookmarks_pass_through() -> None:
    obj = {"metadata": {"name": "rd", "resourceVersion": "7"}}
    assert kubeio.parse_event({"type": "MODIFIED", "object": obj}) == kubeio.WatchEvent("MODIFIED", obj)
    assert kubeio.parse_event({"type": "BOOKMARK", "object": obj}).type == "BOOKMARK"


def test_an_expired_resource_version_means_list_again() -> None:
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (99)"}
    with pytest.raises(kubeio.WatchExpiredError, match="too old resource version"):
        kubeio.parse_event({"type": "ERROR", "object": gone})


def test_other_watch_errors_keep_their_status() -> None:
    with pytest.raises(KubeError) as caught:
        kubeio.parse_event(
            {"type": "ERROR", "object": {"code": 500, "reason": "InternalError", "message": "etcd"}}
        )
    assert (caught.value.status, caught.value.reason, caught.value.message) == (500, "InternalError", "etcd")
    with pytest.raises(KubeError) as forbidden:
        kubeio.raise_for(403, b"not json")
    assert (forbidden.value.status, forbidden.value.message) == (403, "not json")


def test_involved_object_of_a_cluster_scoped_object() -> None:
    obj = {
        "apiVersion": "sdworker.dev/v1alpha1",
        "kind": "RuntimeDisk",
        "metadata": {"name": "x", "uid": "u"},
    }
    assert kubeio.involved(obj) == {
        "apiVersion": "sdworker.dev/v1alpha1",
        "kind": "RuntimeDisk",
        "name": "x",
        "uid": "u",
    }
