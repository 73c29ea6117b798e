"""``sdworker run``'s flags become one validated ``OperatorConfig``; a bad value is refused naming its flag.

Built through the real command line (``sdworker.__main__``: ``parser`` and ``main``), as the pod runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from sdworker.__main__ import main, parser
from sdworker.cloud.gce import adc_project
from sdworker.config import ConfigError, OperatorConfig


def config_of(*flags: str) -> OperatorConfig:
    return OperatorConfig.from_args(parser().parse_args(["run", *flags]))


def test_defaults_of_the_command_line_are_the_config_defaults() -> None:
    assert config_of() == OperatorConfig()


def test_every_flag_lands_in_its_field() -> None:
    config = config_of(
        "--kubeconfig=/tmp/kc",
        "--health-address=127.0.0.1:18080",
        "--metrics-address=",
        "--peering=sdworker",
        "--peering-priority=7",
        "--resync-seconds=5",
        "--cluster-name=c-1_a",
        "--cloud=gce",
        "--compute-endpoint=http://127.0.0.1:9999",
        "--anonymous-credentials",
        "--project=sim-project",
        "--write-quota=2.5",
        "--write-burst=1",
        "--cloud-threads=16",
        "--sweep-seconds=3",
        "--no-preprovision",
        "--verbose",
    )
    assert config == OperatorConfig(
        kubeconfig="/tmp/kc",
        health_address="127.0.0.1:18080",
        metrics_address="",
        peering="sdworker",
        peering_priority=7,
        resync_seconds=5.0,
        cluster_name="c-1_a",
        cloud="gce",
        compute_endpoint="http://127.0.0.1:9999",
        anonymous_credentials=True,
        project="sim-project",
        write_quota=2.5,
        write_burst=1,
        cloud_threads=16,
        sweep_seconds=3.0,
        preprovision=False,
        verbose=True,
    )


def test_the_config_is_frozen() -> None:
    config = OperatorConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sweep_seconds = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "flag",
    [
        "--sweep-seconds=0",
        "--resync-seconds=-1",
        "--resync-seconds=nan",
        "--write-quota=0",
        "--write-burst=0",
        "--cloud-threads=0",
        "--failed-retry-seconds=0",
        "--cluster-name=Prod",
        "--cluster-name=",
        "--cluster-name=" + "a" * 64,
        "--project=Bad_Project",
        "--project=abc",
        "--health-address=8080",
        "--metrics-address=0.0.0.0:70000",
        "--peering=Not A Name",
        "--anonymous-credentials",
    ],
)
def test_a_bad_flag_is_refused_naming_it(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    named = flag.partition("=")[0]
    flags = [flag]
    with pytest.raises(ConfigError) as err:
        config_of(*flags)
    assert err.value.flag == named
    assert str(err.value).startswith(f"{named}: ")
    # The command line exits with argparse's usage error (status 2) before kopf starts.
    with pytest.raises(SystemExit) as exited:
        main(["run", *flags])
    assert exited.value.code == 2
    assert f"error: {named}: " in capsys.readouterr().err


@pytest.mark.parametrize("project", ["sim-project", "my-project-123456", "example.com:my-project"])
def test_gce_project_ids_are_accepted(project: str) -> None:
    assert config_of(f"--project={project}").project == project


# --- the default project: the Application Default Credentials' (Workload Identity's on GKE) -----------


def test_without_project_the_credentials_project_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ADC file as `gcloud auth application-default login` writes it; google.auth.default() takes the
    # project from $GOOGLE_CLOUD_PROJECT before any other source (google/auth/_default.py: default()).
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps({"type": "authorized_user", "client_id": "id", "client_secret": "s", "refresh_token": "t"})
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "adc-project")
    assert asyncio.run(adc_project()) == "adc-project"


def test_without_credentials_there_is_no_default_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert asyncio.run(adc_project()) is None


# --- kopf peering priority -------------------------------------------------------------------------------


def test_the_peering_priority_defaults_to_oldest_wins_and_can_be_given() -> None:
    assert config_of("--peering=sdworker").peering_priority is None  # derived at start (oldest wins)
    assert config_of("--peering=sdworker", "--peering-priority=100").peering_priority == 100


@pytest.mark.parametrize(
    "flags",
    [
        ["--peering-priority=5"],  # without --peering it means nothing
        ["--peering=sdworker", "--peering-priority=-1"],
        ["--peering=sdworker", f"--peering-priority={2**53}"],  # not exact in the peering object's JSON
    ],
)
def test_a_bad_peering_priority_is_refused_naming_it(flags: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        config_of(*flags)
    assert err.value.flag == "--peering-priority"
