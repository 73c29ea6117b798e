"""The agent's command line: every flag lands in the ``Config`` field it names; a bad value names its flag."""

from __future__ import annotations

import pytest

from sdworker_agent.__main__ import config_from, parse_args
from sdworker_agent.config import Config
from sdworker_content.verify import VerifyMode


def test_defaults_are_the_configs_defaults() -> None:
    assert config_from(parse_args(["--node-name=n1"])) == Config("n1")


def test_every_flag_sets_its_field() -> None:
    argv = [
        "--node-name=n1",
        "--dev-root=/d",
        "--host-root=/h",
        "--mount-root=/m",
        "--device-timeout=3",
        "--prefetch-workers=2",
        "--verify=full",
        "--full-fsck",
        "--resync-seconds=5",
        "--watch-timeout=4",
    ]
    assert config_from(parse_args(argv)) == Config(
        node_name="n1",
        dev_root="/d",
        host_root="/h",
        mount_root="/m",
        device_timeout=3.0,
        prefetch_workers=2,
        verify_mode=VerifyMode.FULL,
        full_fsck=True,
        resync_seconds=5.0,
        watch_timeout_seconds=4,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--node-name=n1", "--verify=bogus"], "argument --verify: invalid VerifyMode value: 'bogus'"),
        (["--node-name="], "--node-name or $NODE_NAME is required"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert says in capsys.readouterr().err
