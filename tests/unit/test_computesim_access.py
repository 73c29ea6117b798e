"""Disk access modes in the simulator: which types take which mode, and who may attach (engine only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdworker.cloud.errors import classify_http
from sdworker_tools.computesim.config import SimConfig
from sdworker_tools.computesim.engine import Engine
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.links import Links

PROJECT, ZONE = "p", "us-central1-a"
PARAMS = {"project": PROJECT, "zone": ZONE}
BASE = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}"
PD_TYPES = ("pd-standard", "pd-balanced", "pd-ssd")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    config = SimConfig(latency="instant", block_devices=False, write_quota_per_s=None)
    eng = Engine(config, Links("http://sim/compute/v1/"), tmp_path, tmp_path / "nodes")
    for i in range(3):
        eng.create_instance(project=PROJECT, zone=ZONE, name=f"vm{i}")
    yield eng
    eng.close()


def wait(eng: Engine, op: dict[str, Any]) -> dict[str, Any]:
    params = {**PARAMS, "operation": op["name"]}
    done = eng.call("zoneOperations.wait", f"{BASE}/operations/{op['name']}/wait", params, {}, None)
    assert done["status"] == "DONE"
    assert "error" not in done, done
    return done


def insert(eng: Engine, name: str, disk_type: str, access_mode: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "sizeGb": "10", "type": f"zones/{ZONE}/diskTypes/{disk_type}"}
    if access_mode is not None:
        body["accessMode"] = access_mode
    wait(eng, eng.call("disks.insert", f"{BASE}/disks", PARAMS, {}, body))
    return eng.call("disks.get", f"{BASE}/disks/{name}", {**PARAMS, "disk": name}, {}, None)


def attach(eng: Engine, vm: str, disk: str, mode: str) -> None:
    body = {"source": f"projects/{PROJECT}/zones/{ZONE}/disks/{disk}", "deviceName": disk, "mode": mode}
    path = f"{BASE}/instances/{vm}/attachDisk"
    wait(eng, eng.call("instances.attachDisk", path, {**PARAMS, "instance": vm}, {}, body))


@pytest.mark.parametrize(
    ("disk_type", "requested", "expected"),
    [
        ("hyperdisk-ml", None, "READ_WRITE_SINGLE"),
        ("hyperdisk-ml", "READ_ONLY_MANY", "READ_ONLY_MANY"),
        ("hyperdisk-balanced", None, "READ_WRITE_SINGLE"),
        ("hyperdisk-balanced", "READ_WRITE_MANY", "READ_WRITE_MANY"),
        ("hyperdisk-extreme", "READ_WRITE_SINGLE", "READ_WRITE_SINGLE"),
        ("hyperdisk-throughput", "READ_WRITE_SINGLE", "READ_WRITE_SINGLE"),
        ("pd-balanced", None, None),
        ("pd-ssd", None, None),
    ],
)
def test_insert_defaults_and_accepted_modes(
    engine: Engine, disk_type: str, requested: str | None, expected: str | None
) -> None:
    disk = insert(engine, "d", disk_type, requested)
    assert disk.get("accessMode") == expected


@pytest.mark.parametrize(
    ("disk_type", "requested", "why"),
    [
        ("hyperdisk-balanced", "READ_ONLY_MANY", "not supported for disk type 'hyperdisk-balanced'"),
        ("hyperdisk-throughput", "READ_ONLY_MANY", "not supported for disk type 'hyperdisk-throughput'"),
        ("hyperdisk-throughput", "READ_WRITE_MANY", "not supported for disk type 'hyperdisk-throughput'"),
        ("hyperdisk-extreme", "READ_ONLY_MANY", "not supported for disk type 'hyperdisk-extreme'"),
        ("hyperdisk-extreme", "READ_WRITE_MANY", "not supported for disk type 'hyperdisk-extreme'"),
        ("hyperdisk-ml", "READ_WRITE_MANY", "not supported for disk type 'hyperdisk-ml'"),
        ("pd-balanced", "READ_ONLY_MANY", "only supported for Hyperdisk"),
        ("hyperdisk-ml", "WRITE_ONLY", "Must be one of"),
    ],
)
def test_insert_refuses_a_mode_the_type_cannot_serve(
    engine: Engine, disk_type: str, requested: str, why: str
) -> None:
    with pytest.raises(ApiError) as exc:
        insert(engine, "d", disk_type, requested)
    assert (exc.value.code, exc.value.reason) == (400, "invalid")
    assert "resource.accessMode" in exc.value.message
    assert why in exc.value.message
    assert engine.inventory()["disks"] == []


def test_read_only_many_hyperdisk_ml_attaches_read_only_to_many(engine: Engine) -> None:
    insert(engine, "ml", "hyperdisk-ml", "READ_ONLY_MANY")
    for vm in ("vm0", "vm1", "vm2"):
        attach(engine, vm, "ml", "READ_ONLY")
    (disk,) = engine.inventory()["disks"]
    assert len(disk["users"]) == 3


def test_read_only_many_refuses_a_read_write_attach(engine: Engine) -> None:
    insert(engine, "ml", "hyperdisk-ml", "READ_ONLY_MANY")
    with pytest.raises(ApiError) as exc:
        attach(engine, "vm0", "ml", "READ_WRITE")
    assert (exc.value.code, exc.value.reason) == (400, "badRequest")
    assert "READ_ONLY_MANY" in exc.value.message


def test_hyperdisk_without_the_mode_fails_at_the_second_attach(engine: Engine) -> None:
    """The bug the operator had: a hyperdisk-ml created without accessMode is READ_WRITE_SINGLE."""
    insert(engine, "ml", "hyperdisk-ml")
    attach(engine, "vm0", "ml", "READ_ONLY")
    with pytest.raises(ApiError) as exc:
        attach(engine, "vm1", "ml", "READ_ONLY")
    assert (exc.value.code, exc.value.reason) == (400, "resourceInUseByAnotherResource")
    assert "is already being used by 'projects/p/zones/us-central1-a/instances/vm0'" in exc.value.message
    # The operator's error table turns it into the reason its conditions and Events carry.
    assert classify_http(exc.value.code, [exc.value.reason], exc.value.message).reason == "ResourceInUse"


def test_hyperdisk_balanced_cannot_be_attached_read_only(engine: Engine) -> None:
    insert(engine, "hb", "hyperdisk-balanced")
    with pytest.raises(ApiError) as exc:
        attach(engine, "vm0", "hb", "READ_ONLY")
    assert (exc.value.code, exc.value.reason) == (400, "badRequest")
    assert exc.value.message == "hyperdisk-balanced disk type cannot be attached in read-only mode."
    assert classify_http(exc.value.code, [exc.value.reason], exc.value.message).reason == "InvalidRequest"


def test_read_write_many_hyperdisk_takes_several_writers(engine: Engine) -> None:
    insert(engine, "hb", "hyperdisk-balanced", "READ_WRITE_MANY")
    attach(engine, "vm0", "hb", "READ_WRITE")
    attach(engine, "vm1", "hb", "READ_WRITE")


@pytest.mark.parametrize(
    ("disk_type", "granted", "refused"),
    [
        # Persistent Disk shares read-only without an access mode ...
        *[
            pytest.param(t, ("READ_ONLY", "READ_ONLY"), "READ_WRITE", id=f"{t}-read-only-many")
            for t in PD_TYPES
        ],
        # ... its read-write attachment is one instance's only ...
        pytest.param("pd-balanced", ("READ_WRITE",), "READ_ONLY", id="pd-read-write-single"),
        # ... and Extreme PD is not shared at all.
        pytest.param("pd-extreme", ("READ_ONLY",), "READ_ONLY", id="pd-extreme-not-shared"),
    ],
)
def test_persistent_disk_sharing(
    engine: Engine, disk_type: str, granted: tuple[str, ...], refused: str
) -> None:
    insert(engine, "pd", disk_type)
    for i, mode in enumerate(granted):
        attach(engine, f"vm{i}", "pd", mode)
    with pytest.raises(ApiError) as exc:
        attach(engine, f"vm{len(granted)}", "pd", refused)
    assert exc.value.reason == "resourceInUseByAnotherResource"
