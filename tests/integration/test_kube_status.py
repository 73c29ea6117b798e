"""The one status writer against the real API server: compare-and-set on resourceVersion, no empty writes.

The RuntimeDisk is the one the operator produces (``tests.unit.invalid_runtimedisks.produced_runtimedisk``);
its owner Node and finalizers are dropped, so the garbage collector leaves it and the test can delete it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from sdworker.api import constants as c
from sdworker.api.transitions import TransitionError, Writer, advance
from sdworker.api.types import Phase
from sdworker.kube.client import Kube
from sdworker.kube.status import update_status
from sdworker_tools.cluster import LocalCluster
from tests.unit.invalid_runtimedisks import produced_runtimedisk

T = TypeVar("T")
Json = dict[str, Any]
NOW = datetime(2026, 11, 30, 1, 2, 3, 400000, tzinfo=UTC)


def with_kube(cluster: LocalCluster, body: Callable[[Kube, str], Awaitable[T]]) -> T:
    """Run ``body`` with a client and a fresh RuntimeDisk of the operator's making; delete it after."""

    async def main() -> T:
        kube = await Kube.connect(str(cluster.kubeconfig))
        manifest = produced_runtimedisk(node=f"status-{uuid.uuid4().hex[:8]}")
        manifest["metadata"].pop("ownerReferences")
        manifest["metadata"].pop("finalizers")
        name = manifest["metadata"]["name"]
        try:
            assert await kube.create(manifest) is not None
            return await body(kube, name)
        finally:
            await kube.delete(c.RUNTIMEDISK_KIND, name)
            await kube.close()

    return asyncio.run(main())


def creating(obj: Json) -> Json:
    return advance(
        obj.get("status") or {}, Writer.OPERATOR, Phase.CREATING, reason="CreatingDisk", message="", now=NOW
    )


def test_a_write_replaces_the_status_and_nothing_changed_writes_nothing(
    cluster: LocalCluster, crds: list[str]
) -> None:
    async def body(kube: Kube, name: str) -> None:
        written = await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        assert written is not None
        assert written["status"] == {"phase": "Creating", "reason": "CreatingDisk", "message": ""}
        version = written["metadata"]["resourceVersion"]
        # The same status again, and a mutate that declines: no write, the version stays.
        same = await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        declined = await update_status(kube, c.RUNTIMEDISK_KIND, name, lambda obj: None)
        assert same is not None
        assert declined is not None
        assert same["metadata"]["resourceVersion"] == declined["metadata"]["resourceVersion"] == version
        # A replace drops what the new status leaves out (a merge patch would have kept "message").
        fresh = await update_status(
            kube, c.RUNTIMEDISK_KIND, name, lambda obj: {"phase": "Creating", "reason": "CreatingDisk"}
        )
        assert fresh is not None
        assert fresh["status"] == {"phase": "Creating", "reason": "CreatingDisk"}

    with_kube(cluster, body)


def test_a_concurrent_write_is_never_overwritten(cluster: LocalCluster, crds: list[str]) -> None:
    other = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))

    async def body(kube: Kube, name: str) -> list[str]:
        await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        seen: list[str] = []

        def mutate(obj: Json) -> Json:
            status = obj["status"]
            seen.append(status["reason"])
            if len(seen) == 1:
                # Another writer lands between our read and our write: our first write must get a 409.
                other.patch_cluster_custom_object_status(
                    c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"status": {"reason": "RateLimited"}}
                )
            return advance(
                status, Writer.OPERATOR, Phase.ATTACHING, reason="AttachingDisk", message="", now=NOW
            )

        written = await update_status(kube, c.RUNTIMEDISK_KIND, name, mutate)
        assert written is not None
        assert written["status"]["phase"] == "Attaching"
        return seen

    try:
        # First decided from the stale read, then again from the other writer's status after the 409.
        assert with_kube(cluster, body) == ["CreatingDisk", "RateLimited"]
    finally:
        other.api_client.close()


def test_a_refused_transition_writes_nothing_and_a_missing_object_is_none(
    cluster: LocalCluster, crds: list[str]
) -> None:
    def ready(obj: Json) -> Json:
        return advance(
            obj.get("status") or {}, Writer.OPERATOR, Phase.READY, reason="Ready", message="", now=NOW
        )

    async def body(kube: Kube, name: str) -> None:
        with pytest.raises(TransitionError, match="the operator does not set phase Ready"):
            await update_status(kube, c.RUNTIMEDISK_KIND, name, ready)
        obj = await kube.get(c.RUNTIMEDISK_KIND, name)
        assert obj is not None
        assert "status" not in obj
        assert await update_status(kube, c.RUNTIMEDISK_KIND, f"{name}-gone", creating) is None

    with_kube(cluster, body)


def counting_gets(kube: Kube) -> list[str]:
    """Record every GET the one writer makes (the seam: our own client's ``get``)."""
    calls: list[str] = []
    real_get = kube.get

    async def get(kind: str, name: str, namespace: str | None = None) -> Json | None:
        calls.append(name)
        return await real_get(kind, name, namespace)

    kube.get = get  # type: ignore[method-assign]
    return calls


def attaching(obj: Json) -> Json:
    return advance(
        obj["status"], Writer.OPERATOR, Phase.ATTACHING, reason="AttachingDisk", message="", now=NOW
    )


def test_a_current_known_copy_is_written_without_a_read(cluster: LocalCluster, crds: list[str]) -> None:
    async def body(kube: Kube, name: str) -> None:
        current = await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        assert current is not None
        gets = counting_gets(kube)
        written = await update_status(kube, c.RUNTIMEDISK_KIND, name, attaching, known=current)
        assert written is not None
        assert written["status"]["phase"] == "Attaching"
        assert gets == []
        stored = await kube.get(c.RUNTIMEDISK_KIND, name)
        assert stored is not None
        assert stored["status"] == written["status"]

    with_kube(cluster, body)


def test_a_stale_known_copy_is_refused_and_decided_again_from_a_read(
    cluster: LocalCluster, crds: list[str]
) -> None:
    other = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))

    async def body(kube: Kube, name: str) -> tuple[list[str], Json]:
        stale = await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        assert stale is not None
        # Another writer moves the object on after our copy was taken.
        other.patch_cluster_custom_object_status(
            c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, name, {"status": {"reason": "RateLimited"}}
        )
        seen: list[str] = []

        def mutate(obj: Json) -> Json:
            seen.append(obj["status"]["reason"])
            return attaching(obj)

        gets = counting_gets(kube)
        written = await update_status(kube, c.RUNTIMEDISK_KIND, name, mutate, known=stale)
        assert written is not None
        assert gets == [name]
        return seen, written["status"]

    try:
        seen, status = with_kube(cluster, body)
        # Decided from the stale copy, refused (409), decided again from the other writer's version.
        assert seen == ["CreatingDisk", "RateLimited"]
        assert status["phase"] == "Attaching"
    finally:
        other.api_client.close()


def test_nothing_to_write_or_a_refusal_from_a_known_copy_is_decided_again_from_a_read(
    cluster: LocalCluster, crds: list[str]
) -> None:
    async def body(kube: Kube, name: str) -> None:
        current = await update_status(kube, c.RUNTIMEDISK_KIND, name, creating)
        assert current is not None
        # A copy that already shows the wanted status does not stop the write the stored object needs.
        looks_done = {**current, "status": attaching(current)}
        again = await update_status(kube, c.RUNTIMEDISK_KIND, name, attaching, known=looks_done)
        assert again is not None
        assert again["status"]["phase"] == "Attaching"

        # A mutate that refuses the stale copy is asked again with the stored object, which it accepts.
        def only_from_attaching(obj: Json) -> Json:
            if obj["status"]["phase"] != "Attaching":
                raise TransitionError(f"phase {obj['status']['phase']}")
            return {**obj["status"], "message": "seen Attaching"}

        moved = await update_status(kube, c.RUNTIMEDISK_KIND, name, only_from_attaching, known=current)
        assert moved is not None
        assert moved["status"]["message"] == "seen Attaching"

    with_kube(cluster, body)
