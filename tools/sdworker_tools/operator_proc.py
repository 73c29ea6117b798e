"""The operator as a real process against a local cluster: how the tests and the demo run it.

``python -m sdworker run`` exactly as in a pod (its own process, its own credentials from a
kubeconfig), so callers can SIGKILL and restart it; liveness is awaited on its ``/healthz``.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.wait import Abort, wait_for


class OperatorProcess:
    """Restartable ``sdworker run``; without ``extra_args`` it runs with ``--cloud=none``. ``env`` is added to
    this process's environment (e.g. ``POD_ID``, the replica's kopf peering identity, as a pod's Downward API
    gives it)."""

    def __init__(
        self,
        cluster: LocalCluster,
        logdir: Path,
        extra_args: Sequence[str] | None = None,
        *,
        verbose: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.extra_args = list(extra_args) if extra_args is not None else ["--cloud=none"]
        self.logdir = logdir
        self.verbose = verbose
        self.env = dict(env or {})
        self.proc: procs.Process | None = None
        self.starts = 0
        self.metrics_port = 0

    @property
    def log_path(self) -> Path:
        return self.logdir / f"operator-{self.starts}.log"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self) -> None:
        health, self.metrics_port = free_port(), free_port()
        self.starts += 1
        self.logdir.mkdir(parents=True, exist_ok=True)
        # extra_args come last: argparse keeps the last value, so a caller can override any flag.
        self.proc = proc = procs.Process(
            "sdworker-operator",
            [
                sys.executable,
                "-m",
                "sdworker",
                "run",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--health-address=127.0.0.1:{health}",
                f"--metrics-address=127.0.0.1:{self.metrics_port}",
                *(["--verbose"] if self.verbose else []),
                *self.extra_args,
            ],
            self.log_path,
            env={**os.environ, **self.env} if self.env else None,
        )

        def healthy() -> bool:
            if not proc.alive():
                raise Abort(f"the operator exited:\n{proc.log_tail(60)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(healthy, timeout=60, what="the operator's liveness endpoint", describe=proc.log_tail)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies under the operator."""
        if self.proc is not None:
            self.proc.kill()

    def log_tail(self, lines: int = 80) -> str:
        return self.proc.log_tail(lines) if self.proc else ""
