"""An image held not ready (everywhere, or in some zones) until released, on the engine alone.

GCE lets a disk be created from an image only once the image is READY (Compute Engine API reference,
``Image.status``); before that ``disks.insert`` answers 400 ``resourceNotReady`` "The resource
'projects/P/global/images/X' is not ready" (the wording reported in ZcashFoundation/zebra#5044). The
simulator's ``hold_image`` keeps an image in that state, in every zone (``status`` PENDING) or in the zones
named (a zone the image has not reached), until ``release_image``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdworker_tools.computesim.config import SimConfig
from sdworker_tools.computesim.engine import Engine
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.links import Links

PROJECT, ZONE, OTHER = "p", "us-central1-a", "us-central1-b"
IMAGE = f"projects/{PROJECT}/global/images/img"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    config = SimConfig(latency="instant", block_devices=False, write_quota_per_s=None)
    eng = Engine(config, Links("http://sim/compute/v1/"), tmp_path, tmp_path / "nodes")
    eng.register_image("img", None, project=PROJECT, family="fam", disk_size_gb=1)
    yield eng
    eng.close()


def insert(eng: Engine, name: str, zone: str = ZONE) -> dict[str, Any]:
    """``disks.insert`` from the image, waited for; the DONE operation."""
    params = {"project": PROJECT, "zone": zone}
    op = eng.call(
        "disks.insert",
        f"/compute/v1/projects/{PROJECT}/zones/{zone}/disks",
        params,
        {},
        {"name": name, "sourceImage": IMAGE},
    )
    return eng.call("zoneOperations.wait", "/wait", {**params, "operation": op["name"]}, {}, None)


def image(eng: Engine) -> dict[str, Any]:
    return eng.call("images.get", f"/compute/v1/{IMAGE}", {"project": PROJECT, "image": "img"}, {}, None)


def refused(eng: Engine, name: str, zone: str = ZONE) -> ApiError:
    with pytest.raises(ApiError) as exc:
        insert(eng, name, zone)
    return exc.value


def test_held_everywhere_the_image_is_pending_and_disks_from_it_are_refused(engine: Engine) -> None:
    engine.hold_image("img", project=PROJECT)
    assert image(engine)["status"] == "PENDING"
    for zone in (ZONE, OTHER):
        error = refused(engine, f"d-{zone}", zone)
        assert (error.code, error.reason) == (400, "resourceNotReady")
        assert error.message == f"The resource '{IMAGE}' is not ready"
    assert engine.inventory()["disks"] == []  # refused before anything was reserved
    assert engine.inventory()["images"][0]["_sim"]["heldIn"] == ["*"]

    engine.release_image("img", project=PROJECT)
    assert image(engine)["status"] == "READY"
    done = insert(engine, "d1")
    assert "error" not in done
    assert [d["status"] for d in engine.inventory()["disks"]] == ["READY"]


def test_held_in_a_zone_only_that_zone_refuses_until_released(engine: Engine) -> None:
    engine.hold_image("img", project=PROJECT, zones=[ZONE])
    assert image(engine)["status"] == "READY"  # images are global: the zone's copy does not show
    assert refused(engine, "d1").reason == "resourceNotReady"
    assert "error" not in insert(engine, "d2", OTHER)
    assert engine.inventory()["images"][0]["_sim"]["heldIn"] == [ZONE]

    engine.release_image("img", project=PROJECT)
    assert "error" not in insert(engine, "d1")
    assert engine.inventory()["images"][0]["_sim"]["heldIn"] is None


def test_a_hold_names_an_existing_image_and_known_zones(engine: Engine) -> None:
    with pytest.raises(ApiError) as missing:
        engine.hold_image("nope", project=PROJECT)
    assert missing.value.code == 404
    with pytest.raises(ApiError) as bad_zone:
        engine.hold_image("img", project=PROJECT, zones=["mars-north1-a"])
    assert bad_zone.value.code == 400
    assert "'zones'" in bad_zone.value.message
    assert image(engine)["status"] == "READY"
