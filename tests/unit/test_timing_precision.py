"""Cold-start timings keep sub-second precision from the writer to every reader.

Most steps of a node's cold start take well under a second, so the RuntimeDisk status timings are written
with microseconds (``format_micro_time``); the parser the operator and the agent read with, and the
``sdworker status`` timeline, must keep them. Conditions stay in metav1.Time's whole seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import (
    Condition,
    ConditionStatus,
    Phase,
    RuntimeDiskStatus,
    Timings,
    format_micro_time,
    format_time,
)
from sdworker.status_view import timeline
from tests.unit.invalid_runtimedisks import produced_runtimedisk

T0 = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_micro_time_is_rfc3339_with_six_fraction_digits() -> None:
    assert format_micro_time(T0) == "2026-01-01T12:00:00.250000Z"
    assert format_micro_time(T0.replace(microsecond=0)) == "2026-01-01T12:00:00.000000Z"
    assert format_micro_time(T0.astimezone(UTC).replace(tzinfo=UTC)) == format_micro_time(T0)
    with pytest.raises(ValueError, match="naive"):
        format_micro_time(datetime(2026, 1, 1))


def test_fixed_width_strings_sort_in_time_order() -> None:
    moments = [T0 + timedelta(microseconds=n) for n in (0, 9, 10, 999_999, 1_000_000, 1_000_001)]
    assert sorted(format_micro_time(m) for m in moments) == [format_micro_time(m) for m in moments]


def test_timings_round_trip_through_the_parser_with_microseconds() -> None:
    timings = Timings(
        node_created=T0,
        disk_created=T0 + timedelta(seconds=0.123456),
        attached=T0 + timedelta(seconds=0.5),
        mounted=T0 + timedelta(seconds=0.61),
        verified=T0 + timedelta(seconds=0.7),
        prefetched=T0 + timedelta(seconds=1.25),
    )
    status = RuntimeDiskStatus(phase=Phase.READY, timings=timings).to_dict()
    assert status["timings"]["diskCreated"] == "2026-01-01T12:00:00.373456Z"
    raw = produced_runtimedisk()
    raw["status"] = status
    assert parse_runtimedisk(raw).status.timings == timings


def test_status_view_offsets_are_sub_second() -> None:
    timings = Timings(
        node_created=T0,
        disk_created=T0 + timedelta(seconds=0.125),
        attached=T0 + timedelta(seconds=0.375),
        mounted=T0 + timedelta(seconds=0.5),
        verified=T0 + timedelta(seconds=0.625),
    )
    raw = produced_runtimedisk()
    raw["status"] = RuntimeDiskStatus(phase=Phase.READY, timings=timings).to_dict()
    view = timeline(raw)
    assert view["offsetsSeconds"]["diskCreated"] == pytest.approx(0.125)
    assert view["offsetsSeconds"]["attached"] == pytest.approx(0.375)
    assert view["readySeconds"] == pytest.approx(0.625)


def test_conditions_keep_whole_seconds() -> None:
    cond = Condition("Ready", ConditionStatus.TRUE, "Mounted", "", T0)
    assert cond.to_dict()["lastTransitionTime"] == format_time(T0) == "2026-01-01T12:00:00Z"
