"""Running the real ``gcloud`` CLI against the simulator, with a throwaway configuration.

``CLOUDSDK_CONFIG`` points gcloud at a private directory, so nothing in the user's own gcloud
configuration is read or changed. The properties written there are what these commands would
set (written directly because each gcloud start costs seconds on a busy machine):

    gcloud config set api_endpoint_overrides/compute http://127.0.0.1:PORT/compute/v1/
    gcloud config set auth/disable_credentials true
    gcloud config set core/project PROJECT

plus switches that keep gcloud off the network (no usage reporting, no update check, no GCE
metadata probe).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sdworker_tools import procs

GCLOUD = shutil.which("gcloud") or "/usr/bin/gcloud"


def write_config(config_dir: Path, api_base: str, project: str) -> dict[str, str]:
    """Create a gcloud configuration for the simulator; return the environment that selects it."""
    configurations = config_dir / "configurations"
    configurations.mkdir(parents=True, exist_ok=True)
    (config_dir / "active_config").write_text("default")
    (configurations / "config_default").write_text(
        "[core]\n"
        f"project = {project}\n"
        "disable_usage_reporting = true\n"
        "check_gce_metadata = false\n"
        "[auth]\n"
        "disable_credentials = true\n"
        "[api_endpoint_overrides]\n"
        f"compute = {api_base}\n"
        "[component_manager]\n"
        "disable_update_check = true\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env["CLOUDSDK_CONFIG"] = str(config_dir)
    return env


def run(
    args: Sequence[str], env: dict[str, str], *, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``gcloud ARGS --quiet`` with the given environment."""
    return procs.run([GCLOUD, *args, "--quiet"], env=env, check=check, timeout=timeout)
