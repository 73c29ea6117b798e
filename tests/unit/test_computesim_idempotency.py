"""requestId: UUID-only, remembered for an hour, and a replay acts once (engine, no HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker_tools.computesim.config import SimConfig
from sdworker_tools.computesim.engine import Engine
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.idempotency import InvalidRequestId, RequestIdCache, validate_request_id
from sdworker_tools.computesim.links import Links

PROJECT, ZONE = "p", "us-central1-a"
DISKS = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/disks"


def test_request_id_must_be_a_nonzero_uuid() -> None:
    rid = uuid.uuid4()
    assert validate_request_id(str(rid).upper()) == str(rid)
    for bad in ("retry-1", "", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(InvalidRequestId):
            validate_request_id(bad)


def test_cache_remembers_per_scope_until_ttl() -> None:
    now = [0.0]
    cache: RequestIdCache[str] = RequestIdCache(ttl_s=3600, clock=lambda: now[0])
    cache.remember("p1", "id", "disks.insert /x", "operation-1")
    hit = cache.get("p1", "id")
    assert hit is not None
    assert hit.value == "operation-1"
    assert cache.get("p2", "id") is None
    now[0] = 3599
    assert cache.get("p1", "id") is not None
    now[0] = 3601
    assert cache.get("p1", "id") is None
    assert len(cache) == 0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    config = SimConfig(latency="instant", block_devices=False, write_quota_per_s=None)
    eng = Engine(config, Links("http://sim/compute/v1/"), tmp_path, tmp_path / "nodes")
    eng.register_image(project=PROJECT, name="img", file=None, disk_size_gb=10)
    yield eng
    eng.close()


def _insert(eng: Engine, name: str, request_id: str | None) -> dict[str, object]:
    query = {"requestId": request_id} if request_id else {}
    body = {"name": name, "sourceImage": f"projects/{PROJECT}/global/images/img", "sizeGb": "10"}
    return eng.call("disks.insert", DISKS, {"project": PROJECT, "zone": ZONE}, query, body)


def test_same_request_id_returns_the_same_operation_and_acts_once(engine: Engine) -> None:
    rid = str(uuid.uuid4())
    first = _insert(engine, "d1", rid)
    second = _insert(engine, "d1", rid)  # without the requestId this would be 409 alreadyExists
    assert second["name"] == first["name"]
    assert second["id"] == first["id"]
    assert second["clientOperationId"] == rid
    inserts = [op for op in engine.operation_log() if op["_sim"]["method"] == "disks.insert"]
    assert len(inserts) == 1
    assert [r["replayed"] for r in engine.request_log() if r["method"] == "disks.insert"] == [False, True]


def test_without_request_id_a_repeat_is_a_second_request(engine: Engine) -> None:
    _insert(engine, "d1", None)
    with pytest.raises(ApiError) as exc:
        _insert(engine, "d1", None)
    assert (exc.value.code, exc.value.reason) == (409, "alreadyExists")


def test_different_request_ids_act_separately(engine: Engine) -> None:
    a = _insert(engine, "d1", str(uuid.uuid4()))
    b = _insert(engine, "d2", str(uuid.uuid4()))
    assert a["name"] != b["name"]


def test_a_malformed_request_id_is_400(engine: Engine) -> None:
    with pytest.raises(ApiError) as exc:
        _insert(engine, "d1", "attempt-2")
    assert exc.value.code == 400
    assert "requestId" in exc.value.message
