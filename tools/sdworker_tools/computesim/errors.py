"""The compute API's error bodies, built in one place so every endpoint answers alike.

Clients do not look at our messages; they look at the HTTP status, ``error.errors[].reason``
(``notFound``, ``alreadyExists``, ``rateLimitExceeded``, ``conditionNotMet``, ...) and, for failed
operations, ``error.errors[].code`` (``RESOURCE_NOT_READY``, ``ZONE_RESOURCE_POOL_EXHAUSTED``). Those
values follow what GCE returns, so retry/fatal tables written against the simulator hold against
the real API. Messages copy the real wording where it is known (e.g. "Too many pending operations
on a resource.", "Labels fingerprint either invalid or resource labels have changed").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# google.rpc.Code names that Google APIs put in ``error.status`` next to the HTTP code.
_RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class ApiError(Exception):
    """An HTTP error answer: raised anywhere below the HTTP layer, rendered by ``body()``."""

    code: int
    reason: str
    message: str
    domain: str = "global"
    details: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
        }
        if self.code in _RPC_STATUS:
            error["status"] = _RPC_STATUS[self.code]
        if self.details:
            error["details"] = self.details
        return {"error": error}


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{path}' was not found")


def already_exists(path: str) -> ApiError:
    return ApiError(409, "alreadyExists", f"The resource '{path}' already exists")


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


def invalid_field(field_name: str, value: object, why: str) -> ApiError:
    return invalid(f"Invalid value for field '{field_name}': '{value}'. {why}")


def required(field_name: str) -> ApiError:
    return ApiError(400, "required", f"Required field '{field_name}' not specified")


def in_use(resource: str, user: str) -> ApiError:
    return ApiError(
        400,
        "resourceInUseByAnotherResource",
        f"The disk resource '{resource}' is already being used by '{user}'",
    )


def not_ready(path: str) -> ApiError:
    return ApiError(400, "resourceNotReady", f"The resource '{path}' is not ready")


def fingerprint_mismatch() -> ApiError:
    return ApiError(
        412, "conditionNotMet", "Labels fingerprint either invalid or resource labels have changed"
    )


def rate_limited(region: str, kind: str = "write") -> ApiError:
    """The regional rate quota (403, as GCE answers it; the quota refills, so callers retry)."""
    metric = "write_requests_per_region" if kind == "write" else "read_requests_per_region"
    limit = (
        "WritesPerMinutePerProjectPerRegion"
        if kind == "write"
        else "ReadRequestsPerMinutePerProjectPerRegion"
    )
    return ApiError(
        403,
        "rateLimitExceeded",
        f"Quota exceeded for quota metric '{metric}' and limit '{limit}' of service "
        f"'compute.googleapis.com' in region '{region}'.",
        domain="usageLimits",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "compute.googleapis.com",
                    "quota_metric": f"compute.googleapis.com/{metric}",
                    "quota_limit": limit,
                    "quota_location": region,
                },
            }
        ],
    )


def too_many_pending() -> ApiError:
    """The per-resource operation queue is full.

    GCE answers this with 403 and reason ``rateLimitExceeded`` (the PD CSI driver logs it as
    "googleapi: Error 403: Too many pending operations on a resource., rateLimitExceeded"), so only
    the message tells it apart from the regional quota.
    """
    return ApiError(
        403, "rateLimitExceeded", "Too many pending operations on a resource.", domain="usageLimits"
    )


def backend_error(code: int) -> ApiError:
    if code == 503:
        return ApiError(503, "backendError", "The service is currently unavailable.")
    return ApiError(code, "backendError", "Internal error. Please try again or contact Google Support.")


# Operation error codes (``operation.error.errors[].code``) with the HTTP status GCE reports in
# ``httpErrorStatusCode`` and a message in the real API's wording.
OPERATION_ERRORS: dict[str, tuple[int, str]] = {
    "RESOURCE_NOT_READY": (400, "The resource '{target}' is not ready"),
    "ZONE_RESOURCE_POOL_EXHAUSTED": (
        503,
        "The zone '{zone}' does not have enough resources available to fulfill the request. "
        "Try a different zone, or try again later.",
    ),
    "QUOTA_EXCEEDED": (403, "Quota 'DISKS_TOTAL_GB' exceeded. Limit: 4096.0 in region {region}."),
    "INTERNAL_ERROR": (500, "Internal error. Please try again or contact Google Support."),
    "RESOURCE_OPERATION_RATE_EXCEEDED": (
        403,
        "Operation rate exceeded for resource '{target}'. Too frequent operations from the source resource.",
    ),
}

_HTTP_REASON_PHRASE = {
    400: "BAD REQUEST",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    409: "CONFLICT",
    500: "INTERNAL SERVER ERROR",
    503: "SERVICE UNAVAILABLE",
}


@dataclass(frozen=True)
class OperationFailure:
    """Why an operation ended DONE with an ``error``."""

    code: str
    message: str
    http_status: int

    @classmethod
    def from_code(cls, code: str, *, target: str, zone: str, region: str) -> OperationFailure:
        status, template = OPERATION_ERRORS.get(code, (400, "Operation failed: {code}"))
        return cls(code, template.format(target=target, zone=zone, region=region, code=code), status)

    @classmethod
    def from_api_error(cls, error: ApiError) -> OperationFailure:
        return cls(error.reason.upper(), error.message, error.code)

    def fields(self) -> dict[str, Any]:
        return {
            "error": {"errors": [{"code": self.code, "message": self.message}]},
            "httpErrorStatusCode": self.http_status,
            "httpErrorMessage": _HTTP_REASON_PHRASE.get(self.http_status, "ERROR"),
        }
