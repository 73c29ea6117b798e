"""What the agent writes to a RuntimeDisk: status transitions, failure messages (expected vs found); paths.

The Node side (views and patches) is tabled in ``test_agent_nodepatch.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sdworker.api import constants as c
from sdworker.api.types import ConditionStatus, Phase, RuntimeDiskStatus
from sdworker_agent.bringup import verify_failure, with_phase
from sdworker_agent.config import Config
from sdworker_agent.kubeio import Stop
from sdworker_content.index import INDEX_PATH, ContentIndex
from sdworker_content.verify import VerifyMode, verify
from sdworker_content.walk import scan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GOOD = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def test_a_phase_change_sets_the_ready_condition_and_keeps_its_transition_time_while_unchanged() -> None:
    mounting = with_phase(RuntimeDiskStatus(phase=Phase.ATTACHED), Phase.MOUNTING, "Mounting", "m", T0)
    (cond,) = mounting.conditions
    assert (mounting.phase, mounting.reason, cond.type, cond.status) == (
        Phase.MOUNTING,
        "Mounting",
        "Ready",
        ConditionStatus.FALSE,
    )
    failed = with_phase(mounting, Phase.FAILED, "DigestMismatch", "x", T0 + timedelta(seconds=5))
    assert failed.conditions[0].last_transition_time == T0  # still False: no transition
    assert failed.conditions[0].reason == "DigestMismatch"
    ready = with_phase(mounting, Phase.READY, "Ready", "ok", T0 + timedelta(seconds=9))
    assert ready.conditions[0].status is ConditionStatus.TRUE
    assert ready.conditions[0].last_transition_time == T0 + timedelta(seconds=9)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (Phase.DETACHING, Phase.FAILED),  # the operator began the teardown meanwhile
        (Phase.DELETING, Phase.FAILED),
        (Phase.PENDING, Phase.MOUNTING),  # not attached yet
        (Phase.ATTACHED, Phase.READY),  # never Ready without Mounting first
        (Phase.MOUNTING, Phase.ATTACHED),  # the operator's phase
    ],
)
def test_the_agent_sets_only_its_own_phases_and_only_where_they_may_follow(
    current: Phase, new: Phase
) -> None:
    with pytest.raises(Stop, match=f"{new}"):
        with_phase(RuntimeDiskStatus(phase=current), new, "R", "m", T0)


def test_verification_failures_say_what_was_expected_and_what_was_found(tmp_path: Path) -> None:
    missing = verify_failure(verify(tmp_path, GOOD), "/dev/sdb")
    assert missing.reason == "ManifestInvalid"
    assert f"expected a runtime manifest digesting to {GOOD}, found: .sdworker/manifest.json: missing" in (
        missing.message
    )

    (tmp_path / "model").write_bytes(b"weights")
    runtime = ContentIndex(entries=scan(tmp_path))
    (tmp_path / ".sdworker").mkdir()
    (tmp_path / INDEX_PATH).write_text(runtime.to_json())
    mismatch = verify_failure(verify(tmp_path, OTHER), "/dev/sdb")
    assert mismatch.reason == "DigestMismatch"
    assert mismatch.message == (
        f"expected manifest digest {OTHER} (spec.imageDigest), "
        f"found {runtime.digest} in /.sdworker/manifest.json on /dev/sdb"
    )

    (tmp_path / "model").write_bytes(b"weights, truncated?")
    tree = verify_failure(verify(tmp_path, runtime.digest, VerifyMode.STAT), "/dev/sdb")
    assert tree.reason == "RuntimeMismatch"
    assert "model: size expected 7, found 19" in tree.message


@pytest.mark.parametrize(
    ("host_root", "mount_root", "expected"),
    [("/host", "/mnt/sdworker", "/host/mnt/sdworker"), ("/tmp/h/", "/mnt/sdworker/", "/tmp/h/mnt/sdworker")],
)
def test_the_mount_dir_is_the_mount_root_under_the_host_root(
    host_root: str, mount_root: str, expected: str
) -> None:
    assert Config("n", host_root=host_root, mount_root=mount_root).mount_dir == expected
    assert Config("n1").selector == f"{c.LABEL_NODE}=n1"
