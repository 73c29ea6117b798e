"""Fixtures for tests against the real local control plane: CRDs installed, the operator running.

The operator runs as its own process (``python -m sdworker run``), exactly as in a pod, so tests
can kill and restart it; its log tail is printed when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker_tools.cluster import LocalCluster
from sdworker_tools.operator_proc import OperatorProcess

__all__ = ["CRDS", "OperatorProcess"]

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
