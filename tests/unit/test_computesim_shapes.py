"""Pure pieces of the simulator: links, error bodies, routes, latency profiles, knobs, fault rules."""

from __future__ import annotations

import random

import pytest

from sdworker_tools.computesim import errors
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.errors import ApiError, OperationFailure
from sdworker_tools.computesim.latency import PROFILES, profile
from sdworker_tools.computesim.links import Ref, parse_image, parse_zonal
from sdworker_tools.computesim.routes import route


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("d1", Ref("p", "us-central1-a", "d1")),
        ("zones/us-east1-b/disks/d1", Ref("p", "us-east1-b", "d1")),
        ("projects/q/zones/us-east1-b/disks/d1", Ref("q", "us-east1-b", "d1")),
        ("https://www.googleapis.com/compute/v1/projects/q/zones/z/disks/d1", Ref("q", "z", "d1")),
        ("http://127.0.0.1:4000/compute/v1/projects/q/zones/z/disks/d1", Ref("q", "z", "d1")),
        ("https://compute.googleapis.com/compute/beta/projects/q/zones/z/disks/d1", Ref("q", "z", "d1")),
    ],
)
def test_zonal_references(ref: str, expected: Ref) -> None:
    assert parse_zonal(ref, "disks", project="p", zone="us-central1-a", field_name="source") == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("img", Ref("p", None, "img")),
        ("global/images/img", Ref("p", None, "img")),
        ("projects/q/global/images/img", Ref("q", None, "img")),
        ("projects/q/global/images/family/sd", Ref("q", None, "sd", family=True)),
        (
            "https://www.googleapis.com/compute/v1/projects/q/global/images/family/sd",
            Ref("q", None, "sd", True),
        ),
    ],
)
def test_image_references(ref: str, expected: Ref) -> None:
    assert parse_image(ref, project="p", field_name="sourceImage") == expected


@pytest.mark.parametrize("ref", ["zones/z/instances/i", "projects/q/zones/z", "a/b"])
def test_malformed_reference_is_400(ref: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_zonal(ref, "disks", project="p", zone="z", field_name="resource.source")
    assert exc.value.code == 400
    assert "resource.source" in exc.value.message


def test_error_body_has_the_real_shape() -> None:
    body = errors.not_found("projects/p/zones/z/disks/d").body()
    assert body == {
        "error": {
            "code": 404,
            "message": "The resource 'projects/p/zones/z/disks/d' was not found",
            "errors": [
                {
                    "message": "The resource 'projects/p/zones/z/disks/d' was not found",
                    "domain": "global",
                    "reason": "notFound",
                }
            ],
            "status": "NOT_FOUND",
        }
    }


def test_rate_limits_are_403_rate_limit_exceeded_told_apart_by_message() -> None:
    quota, pending = errors.rate_limited("us-central1"), errors.too_many_pending()
    assert (quota.code, quota.reason) == (pending.code, pending.reason) == (403, "rateLimitExceeded")
    assert pending.message == "Too many pending operations on a resource."
    assert quota.body()["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"


def test_operation_failure_fields() -> None:
    failure = OperationFailure.from_code(
        "ZONE_RESOURCE_POOL_EXHAUSTED", target="t", zone="projects/p/zones/z", region="r"
    )
    fields = failure.fields()
    assert fields["error"]["errors"][0]["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert "projects/p/zones/z" in fields["error"]["errors"][0]["message"]
    assert fields["httpErrorStatusCode"] == 503


@pytest.mark.parametrize(
    ("verb", "path", "method", "params"),
    [
        ("GET", "/compute/v1/projects/p/zones", "zones.list", {"project": "p"}),
        ("POST", "/compute/v1/projects/p/zones/z/disks", "disks.insert", {"project": "p", "zone": "z"}),
        (
            "GET",
            "/compute/v1/projects/p/global/images/family/sd",
            "images.getFromFamily",
            {"project": "p", "family": "sd"},
        ),
        ("GET", "/compute/v1/projects/p/global/images/sd", "images.get", {"project": "p", "image": "sd"}),
        (
            "POST",
            "/compute/v1/projects/p/zones/z/disks/d/setLabels",
            "disks.setLabels",
            {"project": "p", "zone": "z", "resource": "d"},
        ),
        (
            "POST",
            "/compute/v1/projects/p/zones/z/operations/op-1/wait",
            "zoneOperations.wait",
            {"project": "p", "zone": "z", "operation": "op-1"},
        ),
        ("GET", "/compute/v1/projects/p/aggregated/disks", "disks.aggregatedList", {"project": "p"}),
    ],
)
def test_routes(verb: str, path: str, method: str, params: dict[str, str]) -> None:
    assert route(verb, path) == (method, params)


def test_unknown_route_is_404_and_wrong_verb_405() -> None:
    with pytest.raises(ApiError) as exc:
        route("GET", "/compute/v1/projects/p/zones/z/snapshots")
    assert exc.value.code == 404
    with pytest.raises(ApiError) as exc:
        route("PUT", "/compute/v1/projects/p/zones/z/disks/d")
    assert exc.value.code == 405


def test_profiles_are_within_their_documented_bands() -> None:
    fast, realistic = profile("fast"), profile("realistic")
    assert all(0.01 <= v <= 0.05 for v in fast.operations.values())
    assert 5 <= realistic.base("disks.insert") <= 10
    assert 2 <= realistic.base("instances.attachDisk") <= 5
    assert realistic.first_in_zone_extra(50) > realistic.base("disks.insert")
    assert set(PROFILES) >= {"fast", "realistic", "instant"}


def test_jitter_is_seeded_and_bounded() -> None:
    realistic = profile("realistic")
    a = [realistic.sample("instances.attachDisk", random.Random(7)) for _ in range(3)]
    b = [realistic.sample("instances.attachDisk", random.Random(7)) for _ in range(3)]
    assert a == b
    samples = [realistic.sample("instances.attachDisk", random.Random(i)) for i in range(200)]
    assert min(samples) >= 3.0 * 0.7
    assert max(samples) <= 3.0 * 1.3


def test_overrides_replace_one_method() -> None:
    tuned = profile("fast").with_overrides({"disks.insert": 2.0})
    assert tuned.base("disks.insert") == 2.0
    assert tuned.base("instances.attachDisk") == profile("fast").base("instances.attachDisk")
    with pytest.raises(ValueError, match="unknown methods"):
        profile("fast").with_overrides({"disks.resize": 1.0})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency": "glacial"},
        {"http_error_rate": 1.5},
        {"operation_error_codes": ("NOPE",)},
        {"pending_ops_per_resource": 0},
        {"write_quota_per_s": 0},
        {"host": "0.0.0.0"},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SimConfig(**kwargs)  # type: ignore[arg-type]


def test_runtime_update_only_takes_runtime_fields() -> None:
    config = SimConfig()
    updated = config.updated({"write_quota_per_s": 5, "latency_overrides": {"disks.insert": 1}})
    assert updated.write_quota_per_s == 5
    assert updated.latency_overrides == {"disks.insert": 1.0}
    with pytest.raises(ValueError, match="not run-time settable"):
        config.updated({"port": 1})


def test_fault_rule_matching_and_count() -> None:
    rule = FaultRule(method="instances.*", kind="operation", code="RESOURCE_NOT_READY", target="gpu-node-1")
    assert rule.matches(
        "instances.attachDisk", "/compute/v1/projects/p/zones/z/instances/gpu-node-1/attachDisk"
    )
    assert not rule.matches("disks.insert", "/compute/v1/projects/p/zones/z/instances/gpu-node-1")
    assert not rule.matches(
        "instances.attachDisk", "/compute/v1/projects/p/zones/z/instances/gpu-node-2/attachDisk"
    )
    rule.count = 0
    assert not rule.matches("instances.attachDisk", "/instances/gpu-node-1/attachDisk")
    with pytest.raises(ValueError, match="fault kind"):
        FaultRule(method="*", kind="explode")
