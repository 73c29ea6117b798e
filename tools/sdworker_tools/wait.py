"""Waiting on a condition with a deadline and a failure message that says what was last seen.

Tests and the demo never sleep for a fixed time: they poll an observable condition here, so a
slow machine only makes them slower and a broken one fails with the last observed state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):  # noqa: N818 - reads as a state, like TimeoutError
    """The condition did not hold within the timeout (an AssertionError so pytest shows it plainly)."""


class Abort(Exception):  # noqa: N818 - a control signal, not an error report
    """Raised by a condition that can never become true (e.g. the process it waits on died)."""


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Exceptions raised by ``condition`` count as "not yet" (the object may not exist yet) and the
    last one is reported on timeout, together with ``describe()`` (the current state) if given;
    an ``Abort`` ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    last_error: BaseException | None = None
    while True:
        try:
            last = condition()
            last_error = None
            if last:
                return last
        except Abort:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    parts = [f"timed out after {timeout:.0f}s waiting for {what}", f"last result: {last!r}"]
    if last_error is not None:
        parts.append(f"last error: {type(last_error).__name__}: {last_error}")
    if describe is not None:
        try:
            parts.append(f"state: {describe()}")
        except Exception as exc:
            parts.append(f"state unavailable: {exc}")
    raise WaitTimeout("\n  ".join(parts))
