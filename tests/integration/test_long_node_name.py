"""The real API server accepts the RuntimeDisk the operator builds for a node with a 253-character name, and
the node's agent finds it with its label selector (a label value holds at most 63 characters: the
``sdworker.dev/node`` label is ``naming.node_label_value``, ``spec.nodeName`` the full name)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from sdworker.api import constants as c
from sdworker_agent.config import Config
from tests.unit.test_naming import LONG_NODE
from tests.unit.test_node_label import runtimedisk_for


@pytest.fixture
def created(api: client.ApiClient, crds: list[str]) -> Iterator[dict[str, Any]]:
    objects = client.CustomObjectsApi(api)
    body = runtimedisk_for(LONG_NODE)
    name = body["metadata"]["name"]
    made: dict[str, Any] = objects.create_cluster_custom_object(
        c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, body
    )
    try:
        yield made
    finally:
        # Its owner Node does not exist: drop the finalizers so the garbage collector can take it.
        objects.patch_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"metadata": {"finalizers": None}}
        )
        try:  # the garbage collector may take it first (its owner Node does not exist)
            objects.delete_cluster_custom_object(c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def test_the_agent_of_a_253_character_node_selects_its_runtimedisk(
    api: client.ApiClient, created: dict[str, Any]
) -> None:
    objects = client.CustomObjectsApi(api)
    assert created["spec"]["nodeName"] == LONG_NODE

    def selected(node: str) -> list[str]:
        found = objects.list_cluster_custom_object(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, label_selector=Config(node).selector
        )
        return [item["metadata"]["name"] for item in found["items"]]

    assert selected(LONG_NODE) == [created["metadata"]["name"]]
    assert selected(LONG_NODE[:-1] + "e") == []
