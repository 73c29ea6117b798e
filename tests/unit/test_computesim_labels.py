"""labelFingerprint and label validation: the optimistic concurrency the warm pool relies on."""

from __future__ import annotations

import pytest

from sdworker_tools.computesim import labels
from sdworker_tools.computesim.errors import ApiError


def test_no_labels_has_the_real_apis_fingerprint() -> None:
    assert labels.fingerprint({}) == "42WmSpB8rSM=" == labels.EMPTY_FINGERPRINT


def test_fingerprint_is_order_independent_and_changes_with_content() -> None:
    a = labels.fingerprint({"x": "1", "y": "2"})
    assert a == labels.fingerprint({"y": "2", "x": "1"})
    assert a != labels.fingerprint({"x": "1", "y": "3"})
    assert a != labels.fingerprint({"x": "1"})
    assert a != labels.fingerprint({})


def test_current_fingerprint_passes() -> None:
    current = {"sdworker-pool": "runtime-v3"}
    labels.check_fingerprint(current, labels.fingerprint(current))


def test_stale_fingerprint_is_412_condition_not_met() -> None:
    before = {"sdworker-pool": "runtime-v3"}
    stale = labels.fingerprint(before)
    after = {"sdworker-pool": "runtime-v3", "sdworker-node": "gpu-node-1"}  # another replica claimed it
    with pytest.raises(ApiError) as exc:
        labels.check_fingerprint(after, stale)
    assert exc.value.code == 412
    assert exc.value.reason == "conditionNotMet"
    assert exc.value.body()["error"]["errors"][0]["reason"] == "conditionNotMet"


@pytest.mark.parametrize("given", [None, ""])
def test_missing_fingerprint_is_400_required(given: str | None) -> None:
    with pytest.raises(ApiError) as exc:
        labels.check_fingerprint({}, given)
    assert (exc.value.code, exc.value.reason) == (400, "required")


@pytest.mark.parametrize(
    "bad",
    [
        {"Upper": "x"},
        {"1starts-with-digit": "x"},
        {"ok": "Has-Upper"},
        {"ok": "has space"},
        {"k" * 64: "x"},
        {"ok": "v" * 64},
        {f"k{i}": "v" for i in range(65)},
        ["not", "a", "map"],
    ],
)
def test_invalid_labels_are_400(bad: object) -> None:
    with pytest.raises(ApiError) as exc:
        labels.validate(bad)
    assert exc.value.code == 400


def test_valid_labels_pass_through() -> None:
    good = {"sdworker-managed": "true", "sdworker_runtime": "v3", "empty": ""}
    assert labels.validate(good) == good
    assert labels.validate(None) == {}
