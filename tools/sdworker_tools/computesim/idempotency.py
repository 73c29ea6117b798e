"""``requestId``: a mutation repeated with the same id returns the first operation, acts once.

GCE documents ``requestId`` on every mutating method: a UUID (the zero UUID excluded) that the
server remembers for at least 60 minutes; a retry carrying it "will ignore the second request"
and return the original operation. That is what makes a retry after a lost response safe, so the
simulator enforces the same format and the same memory. Pure: the clock is injected.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_TTL_S = 3600.0


class InvalidRequestId(ValueError):  # noqa: N818 - reads as the condition, like the API's message
    """Not a non-zero UUID."""


def validate_request_id(value: str) -> str:
    """Return the canonical (lower-case, hyphenated) form of a valid request id."""
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise InvalidRequestId(f"requestId {value!r} is not a UUID") from exc
    if parsed.int == 0:
        raise InvalidRequestId("the zero UUID is not a valid requestId")
    return str(parsed)


@dataclass(frozen=True)
class Remembered(Generic[T]):
    value: T
    signature: str  # what the first request was (method + target), to flag a reuse for something else
    at: float


class RequestIdCache(Generic[T]):
    """(scope, requestId) -> the first request's result, for ``ttl_s`` seconds. Thread-safe."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], Remembered[T]] = {}

    def get(self, scope: str, request_id: str) -> Remembered[T] | None:
        with self._lock:
            entry = self._entries.get((scope, request_id))
            if entry is None:
                return None
            if self._clock() - entry.at > self._ttl:
                del self._entries[(scope, request_id)]
                return None
            return entry

    def remember(self, scope: str, request_id: str, signature: str, value: T) -> None:
        with self._lock:
            self._entries[(scope, request_id)] = Remembered(value, signature, self._clock())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
