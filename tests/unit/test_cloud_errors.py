"""The one error table: what GCE says -> retry class and condition reason."""

from __future__ import annotations

import pytest

from sdworker.cloud.errors import Retry, classify_http, classify_operation


@pytest.mark.parametrize(
    ("status", "reasons", "message", "reason", "retry"),
    [
        (403, ["rateLimitExceeded"], "Rate Limit Exceeded", "CloudRateLimited", Retry.SOON),
        (403, ["userRateLimitExceeded"], "quota", "CloudRateLimited", Retry.SOON),
        (429, [], "Too Many Requests", "CloudRateLimited", Retry.SOON),
        (
            400,
            ["resourceNotReady"],
            "Operation rate exceeded. Too many pending operations",
            "CloudBusy",
            Retry.SOON,
        ),
        (400, ["resourceNotReady"], "The resource is not ready", "CloudBusy", Retry.SOON),
        (
            400,
            ["resourceNotReady"],
            "The resource 'projects/p/global/images/sd-runtime-1' is not ready",
            "ImageNotReady",
            Retry.SOON,
        ),
        (
            412,
            ["conditionNotMet"],
            "Labels fingerprint either invalid or resource labels have changed",
            "LabelFingerprintMismatch",
            Retry.SOON,
        ),
        (400, ["resourceInUseByAnotherResource"], "disk is in use", "ResourceInUse", Retry.SOON),
        (500, [], "backend error", "CloudUnavailable", Retry.SOON),
        (503, [], "unavailable", "CloudUnavailable", Retry.SOON),
        (
            404,
            ["notFound"],
            "The resource 'projects/p/global/images/nope' was not found",
            "ImageNotFound",
            Retry.NEVER,
        ),
        (
            404,
            ["notFound"],
            "The resource 'projects/p/zones/z/disks/d' was not found",
            "NotFound",
            Retry.NEVER,
        ),
        (403, ["forbidden"], "Required 'compute.disks.create' permission", "PermissionDenied", Retry.NEVER),
        (403, ["quotaExceeded"], "Quota 'DISKS_TOTAL_GB' exceeded", "QuotaExceeded", Retry.NEVER),
        (400, ["invalid"], "Invalid value for field 'resource.sizeGb'", "InvalidRequest", Retry.NEVER),
        (418, [], "teapot", "CloudError", Retry.NEVER),
    ],
)
def test_http_errors(status: int, reasons: list[str], message: str, reason: str, retry: Retry) -> None:
    err = classify_http(status, reasons, message)
    assert (err.reason, err.retry, err.status) == (reason, retry, status)
    assert message in err.message


@pytest.mark.parametrize(
    ("code", "message", "reason", "retry"),
    [
        ("RESOURCE_NOT_READY", "not ready", "CloudBusy", Retry.SOON),
        ("ZONE_RESOURCE_POOL_EXHAUSTED", "exhausted", "ZoneResourcesExhausted", Retry.SOON),
        ("QUOTA_EXCEEDED", "Quota 'SSD_TOTAL_GB' exceeded", "QuotaExceeded", Retry.NEVER),
        ("INTERNAL_ERROR", "Too many pending operations on a resource", "CloudBusy", Retry.SOON),
        ("SOMETHING_NEW", "unknown", "OperationFailed", Retry.SOON),
    ],
)
def test_operation_errors(code: str, message: str, reason: str, retry: Retry) -> None:
    err = classify_operation(code, message)
    assert (err.reason, err.retry) == (reason, retry)
    assert code in err.message
