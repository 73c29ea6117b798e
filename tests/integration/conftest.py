"""Fixtures for tests against the real local control plane: CRDs installed, the operator running.

The operator runs as its own process (``python -m sdworker run``), exactly as in a pod, so tests
can kill and restart it; its log tail is printed when a test fails.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster, free_port
from sdworker_tools.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def crds(cluster: LocalCluster) -> list[str]:
    """The sdworker CRDs, applied from crds/ and Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    names = [
        line.split("/", 1)[1]
        for line in cluster.kubectl("get", "-f", str(CRDS), "-o", "name").split()
        if line.startswith("customresourcedefinition")
    ]
    for name in names:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    return names


class OperatorProcess:
    """``python -m sdworker run`` against the test cluster; restartable."""

    def __init__(self, cluster: LocalCluster, logdir: Path, extra_args: list[str] | None = None) -> None:
        self.cluster = cluster
        # The session operator runs without a cloud provider; cloud tests start their own.
        self.extra_args = extra_args if extra_args is not None else ["--cloud=none"]
        self.logdir = logdir
        self.proc: procs.Process | None = None
        self.starts = 0

    def start(self) -> None:
        port = free_port()
        self.starts += 1
        self.proc = procs.Process(
            "sdworker-operator",
            [
                sys.executable,
                "-m",
                "sdworker",
                "run",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--health-address=127.0.0.1:{port}",
                f"--metrics-address=127.0.0.1:{free_port()}",
                *self.extra_args,
                "--verbose",
            ],
            self.logdir / f"operator-{self.starts}.log",
        )
        proc = self.proc

        def healthy() -> bool:
            if not proc.alive():
                raise AssertionError(f"operator exited:\n{proc.log_tail(60)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
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


@pytest.fixture(scope="module")
def operator(
    cluster: LocalCluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator without a cloud provider; one per test module, so modules that need another
    configuration (a cloud) never have two operators acting on the same objects."""
    op = OperatorProcess(cluster, tmp_path_factory.mktemp("operator-logs"))
    op.start()
    yield op
    op.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    op = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
    if isinstance(op, OperatorProcess) and getattr(report, "failed", False):
        report.sections.append(("operator log (tail)", op.log_tail()))  # type: ignore[attr-defined]
    return report
