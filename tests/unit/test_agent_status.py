"""What the agent writes: status transitions, failure messages (expected vs found), node views, paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sdworker import manifest
from sdworker.api import constants as c
from sdworker.api.types import ConditionStatus, Phase, RuntimeDiskStatus
from sdworker_agent.agent import Config, json_pointer, node_view, verify_failure, with_phase

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


def test_verification_failures_say_what_was_expected_and_what_was_found(tmp_path: Path) -> None:
    missing = verify_failure(manifest.verify(tmp_path, GOOD), "/dev/sdb")
    assert missing.reason == "ManifestInvalid"
    assert f"expected a runtime manifest digesting to {GOOD}, found: .sdworker/manifest.json: missing" in (
        missing.message
    )

    (tmp_path / "model").write_bytes(b"weights")
    runtime = manifest.Manifest(entries=manifest.scan(tmp_path))
    (tmp_path / ".sdworker").mkdir()
    (tmp_path / manifest.MANIFEST_PATH).write_text(runtime.to_json())
    mismatch = verify_failure(manifest.verify(tmp_path, OTHER), "/dev/sdb")
    assert mismatch.reason == "DigestMismatch"
    assert mismatch.message == (
        f"expected manifest digest {OTHER} (spec.imageDigest), "
        f"found {runtime.digest} in /.sdworker/manifest.json on /dev/sdb"
    )

    (tmp_path / "model").write_bytes(b"weights, truncated?")
    tree = verify_failure(manifest.verify(tmp_path, runtime.digest, manifest.VerifyMode.STAT), "/dev/sdb")
    assert tree.reason == "RuntimeMismatch"
    assert "model: size expected 7, found 19" in tree.message


def test_the_node_view_is_the_taint_and_the_runtime_labels_only() -> None:
    node = {
        "metadata": {"name": "n1", "labels": {"a": "b", f"{c.RUNTIME_READY_LABEL_PREFIX}x": "ready"}},
        "spec": {"taints": [{"key": c.STARTUP_TAINT_KEY, "effect": "NoSchedule"}, {"key": "other"}]},
    }
    view = node_view(node)
    assert (view.name, view.tainted, dict(view.runtime_labels)) == (
        "n1",
        True,
        {f"{c.RUNTIME_READY_LABEL_PREFIX}x": "ready"},
    )
    assert not node_view({"metadata": {"name": "n2"}, "spec": {}}).tainted


@pytest.mark.parametrize(
    ("key", "pointer"),
    [("sdworker.dev/runtime.x", "sdworker.dev~1runtime.x"), ("a~b/c", "a~0b~1c"), ("plain", "plain")],
)
def test_label_keys_become_json_pointer_segments(key: str, pointer: str) -> None:
    assert json_pointer(key) == pointer


@pytest.mark.parametrize(
    ("host_root", "mount_root", "expected"),
    [("/host", "/mnt/sdworker", "/host/mnt/sdworker"), ("/tmp/h/", "/mnt/sdworker/", "/tmp/h/mnt/sdworker")],
)
def test_the_mount_dir_is_the_mount_root_under_the_host_root(
    host_root: str, mount_root: str, expected: str
) -> None:
    assert Config("n", host_root=host_root, mount_root=mount_root).mount_dir == expected
    assert Config("n1").selector == f"{c.LABEL_NODE}=n1"
