"""Whether any SDWorker wants a warm pool: with none, the orphan sweeper takes every unused pool disk.

SDWorker objects as a user writes them (``tests/unit/invalid_specs``: the example's manifest), parsed by the
operator's own parser inside ``warm_pool.any_pool_wanted``.
"""

from __future__ import annotations

from typing import Any

from sdworker.warm_pool import any_pool_wanted
from tests.unit.invalid_specs import valid_sdworker


def with_pool(size: int) -> dict[str, Any]:
    body = valid_sdworker(f"pool-{size}")
    body["spec"]["runtime"]["warmPool"] = {"size": size}
    return body


def test_no_sdworker_or_only_pool_less_ones_want_no_pool() -> None:
    assert not any_pool_wanted([])
    assert not any_pool_wanted([with_pool(0), with_pool(0)])
    without = valid_sdworker("no-pool")
    del without["spec"]["runtime"]["warmPool"]
    assert not any_pool_wanted([without])


def test_one_sdworker_with_a_pool_wants_one() -> None:
    assert any_pool_wanted([with_pool(0), with_pool(3)])


def test_an_sdworker_the_operator_cannot_parse_counts_as_wanting_one() -> None:
    broken = with_pool(0)
    broken["spec"]["runtime"]["diskSizeGb"] = "fifty"
    assert any_pool_wanted([broken])
