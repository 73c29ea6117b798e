"""Fault injection and the pending-operation limit, on the engine alone (no HTTP, no devices)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.engine import Engine
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.links import Links

PROJECT, ZONE = "p", "us-central1-a"
PARAMS = {"project": PROJECT, "zone": ZONE}
DISKS = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/disks"


def make_engine(tmp_path: Path, **knobs: Any) -> Engine:
    config = SimConfig(latency="instant", block_devices=False, write_quota_per_s=None, **knobs)
    return Engine(config, Links("http://sim/compute/v1/"), tmp_path, tmp_path / "nodes")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(tmp_path)
    yield eng
    eng.close()


def insert(eng: Engine, name: str) -> dict[str, Any]:
    return eng.call("disks.insert", DISKS, PARAMS, {}, {"name": name, "sizeGb": "1"})


def get(eng: Engine, name: str) -> dict[str, Any]:
    return eng.call("disks.get", f"{DISKS}/{name}", {**PARAMS, "disk": name}, {}, None)


def wait(eng: Engine, op: dict[str, Any]) -> dict[str, Any]:
    params = {**PARAMS, "operation": op["name"]}
    return eng.call("zoneOperations.wait", f"/compute/v1/.../{op['name']}/wait", params, {}, None)


def outcomes(eng: Engine, n: int) -> list[str]:
    seen = []
    for i in range(n):
        try:
            insert(eng, f"d{i}")
            seen.append("ok")
        except ApiError as exc:
            seen.append(str(exc.code))
    return seen


def test_http_error_rate_one_fails_every_call_without_acting(engine: Engine) -> None:
    engine.configure({"http_error_rate": 1.0})
    with pytest.raises(ApiError) as exc:
        insert(engine, "d1")
    assert exc.value.code in (500, 503)
    assert exc.value.reason == "backendError"
    engine.configure({"http_error_rate": 0.0})
    assert engine.inventory()["disks"] == []


def test_fault_rates_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    runs = []
    for attempt in range(2):
        eng = make_engine(tmp_path / str(attempt), seed=42, http_error_rate=0.5)
        runs.append(outcomes(eng, 30))
        eng.close()
    assert runs[0] == runs[1]
    assert {"ok"} < set(runs[0])  # some failed, some did not
    other = make_engine(tmp_path / "other", seed=43, http_error_rate=0.5)
    assert outcomes(other, 30) != runs[0]
    other.close()


def test_lost_response_acts_but_answers_503(engine: Engine) -> None:
    engine.add_faults([FaultRule(method="disks.insert", kind="lost_response")])
    with pytest.raises(ApiError) as exc:
        insert(engine, "d1")
    assert exc.value.code == 503
    assert get(engine, "d1")["name"] == "d1"  # it was created all the same
    assert [r["fault"] for r in engine.request_log()][:1] == ["lost_response"]


def test_operation_fault_rule_fires_count_times_then_stops(engine: Engine) -> None:
    engine.add_faults([FaultRule(method="disks.*", kind="operation", code="RESOURCE_NOT_READY", count=2)])
    results = [wait(engine, insert(engine, f"d{i}")) for i in range(3)]
    codes = [r.get("error", {}).get("errors", [{}])[0].get("code") for r in results]
    assert codes == ["RESOURCE_NOT_READY", "RESOURCE_NOT_READY", None]
    assert results[0]["httpErrorStatusCode"] == 400
    assert [d["name"] for d in engine.inventory()["disks"]] == ["d2"]


def test_http_fault_rule_can_target_one_resource(engine: Engine) -> None:
    engine.add_faults(
        [FaultRule(method="disks.get", kind="http", http_status=500, target="/disks/d1", count=-1)]
    )
    wait(engine, insert(engine, "d1"))
    wait(engine, insert(engine, "d2"))
    for _ in range(3):
        with pytest.raises(ApiError):
            get(engine, "d1")
    assert get(engine, "d2")["status"] == "READY"


def test_pending_operation_limit_per_resource(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, pending_ops_per_resource=1, latency_overrides={"disks.setLabels": 5.0})
    try:
        wait(eng, insert(eng, "d1"))
        fingerprint = get(eng, "d1")["labelFingerprint"]
        path = f"{DISKS}/d1/setLabels"
        params = {**PARAMS, "resource": "d1"}
        eng.call("disks.setLabels", path, params, {}, {"labels": {"a": "b"}, "labelFingerprint": fingerprint})
        fingerprint = get(eng, "d1")["labelFingerprint"]
        with pytest.raises(ApiError) as exc:
            eng.call(
                "disks.setLabels", path, params, {}, {"labels": {"a": "c"}, "labelFingerprint": fingerprint}
            )
        assert (exc.value.code, exc.value.reason) == (403, "rateLimitExceeded")
        assert exc.value.message == "Too many pending operations on a resource."
        assert eng.inventory()["pendingOperations"] == {f"disk:{PROJECT}/{ZONE}/d1": 1}
        wait(eng, insert(eng, "d2"))  # other resources are not held up
    finally:
        eng.close()
