"""wait_for: returns the first truthy value, reports the last state on timeout, stops on Abort."""

from __future__ import annotations

import itertools

import pytest

from sdworker_tools.wait import Abort, WaitTimeout, wait_for


def test_returns_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_for(lambda: next(counter) >= 3 and "done", timeout=5, what="x", interval=0) == "done"


def test_exceptions_mean_not_yet_and_are_reported() -> None:
    def boom() -> bool:
        raise KeyError("missing-object")

    with pytest.raises(WaitTimeout) as exc:
        wait_for(boom, timeout=0.05, what="the object", interval=0.01, describe=lambda: {"phase": "Pending"})
    message = str(exc.value)
    assert "waiting for the object" in message
    assert "KeyError" in message
    assert "missing-object" in message
    assert "'phase': 'Pending'" in message


def test_abort_ends_the_wait_at_once() -> None:
    calls = []

    def dead() -> bool:
        calls.append(1)
        raise Abort("process exited")

    with pytest.raises(Abort, match="process exited"):
        wait_for(dead, timeout=60, what="never")
    assert len(calls) == 1


def test_last_falsy_result_in_message() -> None:
    with pytest.raises(WaitTimeout, match=r"last result: \[\]"):
        wait_for(list, timeout=0.02, what="a non-empty list", interval=0.01)
