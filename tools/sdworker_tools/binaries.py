"""Where the Go-built control-plane binaries are, building them on first use.

``tools/testcluster/build.sh`` owns the build and its cache (outside the repo, keyed by the
inputs' hash); this module only runs it (a no-op when cached) and checks what it produced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdworker_tools import procs

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "testcluster" / "build.sh"
ENV_OVERRIDE = "SDWORKER_TESTCLUSTER_DIR"


@dataclass(frozen=True)
class Binaries:
    directory: Path

    def path(self, component: str) -> Path:
        return self.directory / component

    @property
    def stages(self) -> list[Path]:
        return sorted((self.directory / "stages").glob("*.yaml"))


def ensure_built() -> Binaries:
    """Return the binaries, building them (with progress on stderr) if the cache lacks them."""
    override = os.environ.get(ENV_OVERRIDE)
    directory = Path(override) if override else Path(procs.run_streaming([str(BUILD_SCRIPT)]).strip())
    binaries = Binaries(directory)
    missing = [
        c
        for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
        if not os.access(binaries.path(c), os.X_OK)
    ]
    if missing or not binaries.stages:
        raise FileNotFoundError(
            f"{directory} lacks {missing or 'kwok stages'}; run tools/testcluster/build.sh"
        )
    return binaries
