"""The compute list filter: both dialects (the client's and gcloud's rewritten one), as sent."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker_tools.computesim.filters import FilterError, parse

DISK: dict[str, Any] = {
    "name": "sdw-3f2a-runtime-v3",
    "zone": "http://127.0.0.1:1/compute/v1/projects/p/zones/us-central1-a",
    "status": "READY",
    "sizeGb": "50",
    "labels": {"sdworker-managed": "true", "sdworker-node": "gpu-node-1", "sdworker-pool": ""},
    "users": ["http://127.0.0.1:1/compute/v1/projects/p/zones/us-central1-a/instances/gpu-node-1"],
}
INSTANCE: dict[str, Any] = {
    "name": "gpu-node-1",
    "disks": [{"deviceName": "boot"}, {"deviceName": "sdw-runtime"}],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # empty filter
        ("", True),
        ("   ", True),
        # the current dialect, as the operator writes it
        ('labels.sdworker-managed = "true"', True),
        ('labels.sdworker-managed = "false"', False),
        ('labels.sdworker-node = "gpu-node-1" AND labels.sdworker-managed = "true"', True),
        ('labels.sdworker-node = "gpu-node-2" AND labels.sdworker-managed = "true"', False),
        ('(labels.sdworker-node = "gpu-node-1") AND (status = "READY")', True),
        ('name = "sdw-3f2a-runtime-v3"', True),
        ("name = sdw-3f2a-runtime-v3", True),
        ('name != "sdw-3f2a-runtime-v3"', False),
        ('name = "sdw-*"', True),
        ('name = "sdw-*-v4"', False),
        ('labels.sdworker-node = "gpu-node-2" OR status = "READY"', True),
        ('NOT labels.sdworker-node = "gpu-node-2"', True),
        ("-labels.absent:*", True),
        ("labels.sdworker-pool:*", True),
        ("labels.absent:*", False),
        ('labels.absent = "x"', False),
        ('labels.absent != "x"', True),  # "not equal" holds for a missing label
        ("sizeGb > 10", True),
        ("sizeGb >= 50", True),
        ("sizeGb < 50", False),
        ("sizeGb = 50", True),
        ('users = "*instances/gpu-node-1"', True),
        # the legacy dialect, exactly as gcloud's filter_rewrite produces it
        (r'name eq ".*\bsdw\-3f2a\-runtime\-v3\b.*"', True),
        (r'(name eq ".*\bsdw\b.*")(status eq READY)', True),
        (r'(name eq ".*\bsdw\b.*")(status eq CREATING)', False),
        (r'(name eq ".*\bd1\b.*")(zone eq ".*\bus\-central1\-a\b.*")', False),
        (r'name ne ".*\bx\b.*"', True),
        (r'name eq ".*(^sdw-).*"', True),
        ("name eq sdw-.*", True),
        ("name eq sdw", False),  # eq is anchored: the pattern must match the whole value
        ("(labels.sdworker-managed eq true) (labels.sdworker-node eq gpu-node-.*)", True),
    ],
)
def test_filter_matches_disk(expression: str, expected: bool) -> None:
    assert parse(expression).matches(DISK) is expected


def test_list_fields_match_any_element() -> None:
    assert parse('disks.deviceName = "sdw-runtime"').matches(INSTANCE)
    assert not parse('disks.deviceName = "other"').matches(INSTANCE)


@pytest.mark.parametrize(
    "expression",
    [
        'labels.a = "unterminated',
        "(name = x",
        "name",
        "name ~ x",
        "= x",
        'name = "x" )',
        "name =",
    ],
)
def test_malformed_filter_is_rejected(expression: str) -> None:
    with pytest.raises(FilterError):
        parse(expression)


def test_bad_regex_is_a_filter_error() -> None:
    with pytest.raises(FilterError, match="bad regular expression"):
        parse('name eq "(unclosed"').matches(DISK)
