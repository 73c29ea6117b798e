"""The one error table: every cloud failure becomes a ``CloudError`` with a reason and a retry class.

HTTP errors (status + the ``errors[].reason`` of the body) and failed operations (``error.errors[].code``)
are matched here, and only here, so the controller's behaviour on a given failure (retry soon, retry
slowly, give up with ``Failed``) and the condition reason users see are decided in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Retry(enum.Enum):
    SOON = "soon"  # transient: back off and try again
    NEVER = "never"  # needs a human (or a quota change): Failed, no retry storm


@dataclass(frozen=True)
class _Rule:
    """A row: every criterion given must hold. HTTP rows use statuses/error_reasons/message;
    operation rows use operation_codes (``*`` for any) and optionally the message."""

    reason: str
    retry: Retry
    statuses: tuple[int, ...] = ()
    error_reasons: tuple[str, ...] = ()
    message_contains: str = ""
    operation_codes: tuple[str, ...] = ()

    def matches_http(self, status: int, reasons: tuple[str, ...], message: str) -> bool:
        if not (self.statuses or self.error_reasons or self.message_contains):
            return False
        return (
            (not self.statuses or status in self.statuses)
            and (not self.error_reasons or any(r in self.error_reasons for r in reasons))
            and (not self.message_contains or self.message_contains.lower() in message.lower())
        )

    def matches_operation(self, code: str, message: str) -> bool:
        if not self.operation_codes:
            return (
                bool(self.message_contains)
                and not self.statuses
                and not self.error_reasons
                and (self.message_contains.lower() in message.lower())
            )
        return (code in self.operation_codes or "*" in self.operation_codes) and (
            not self.message_contains or self.message_contains.lower() in message.lower()
        )


# The first matching row wins: specific reasons before status-code catch-alls.
TABLE: tuple[_Rule, ...] = (
    # GCE reports a full per-resource queue as 403 rateLimitExceeded too; tell the two apart.
    _Rule("CloudBusy", Retry.SOON, message_contains="Too many pending operations"),
    _Rule("CloudRateLimited", Retry.SOON, error_reasons=("rateLimitExceeded", "userRateLimitExceeded")),
    # An image not READY yet (just created, or still being copied): its name is in the message.
    _Rule(
        "ImageNotReady", Retry.SOON, error_reasons=("resourceNotReady",), message_contains="/global/images/"
    ),
    _Rule("CloudBusy", Retry.SOON, error_reasons=("resourceNotReady",)),
    _Rule("CloudBusy", Retry.SOON, operation_codes=("RESOURCE_NOT_READY",)),
    _Rule("LabelFingerprintMismatch", Retry.SOON, statuses=(412,)),
    _Rule("ResourceInUse", Retry.SOON, error_reasons=("resourceInUseByAnotherResource",)),
    _Rule("ZoneResourcesExhausted", Retry.SOON, operation_codes=("ZONE_RESOURCE_POOL_EXHAUSTED",)),
    # Retrying cannot help until someone raises the quota: Failed, and no retry storm.
    _Rule("QuotaExceeded", Retry.NEVER, error_reasons=("quotaExceeded",)),
    _Rule("QuotaExceeded", Retry.NEVER, operation_codes=("QUOTA_EXCEEDED",)),
    _Rule("CloudRateLimited", Retry.SOON, statuses=(429,)),
    _Rule("CloudUnavailable", Retry.SOON, statuses=(500, 502, 503, 504)),
    _Rule("ImageNotFound", Retry.NEVER, statuses=(404,), message_contains="image"),
    _Rule("PermissionDenied", Retry.NEVER, statuses=(401, 403)),
    _Rule("NotFound", Retry.NEVER, statuses=(404,)),
    _Rule("InvalidRequest", Retry.NEVER, statuses=(400, 409, 422)),
    _Rule("OperationFailed", Retry.SOON, operation_codes=("*",)),
)


class CloudError(Exception):
    """A classified cloud failure; ``reason`` is UpperCamelCase and ends up in conditions and Events."""

    def __init__(self, reason: str, retry: Retry, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.retry = retry
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.retry is Retry.SOON


def classify_http(status: int, error_reasons: Iterable[str], message: str) -> CloudError:
    reasons = tuple(error_reasons)
    for rule in TABLE:
        if rule.matches_http(status, reasons, message):
            return CloudError(rule.reason, rule.retry, message, status=status)
    retry = Retry.SOON if status >= 500 else Retry.NEVER
    return CloudError("CloudError", retry, message, status=status)


def classify_operation(code: str, message: str) -> CloudError:
    for rule in TABLE:
        if rule.matches_operation(code, message):
            return CloudError(rule.reason, rule.retry, f"{code}: {message}")
    raise AssertionError("the table ends with a catch-all row")  # pragma: no cover
