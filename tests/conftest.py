"""Shared pytest fixtures: the real local control plane, a namespace per test, API clients.

The control plane starts once per session, and only when a test asks for it, so ``pytest
tests/unit`` never builds or starts anything. Its start-up time is printed in the summary.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from sdworker.api import constants as c
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.wait import WaitTimeout, wait_for

_startup: list[str] = []


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(log=_startup.append) as c:
        yield c


@pytest.fixture(scope="session")
def api(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A DNS-safe name unique to this test, for namespaces, nodes and labels."""
    return f"{_slug(request.node.name, 40)}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(core: client.CoreV1Api, unique: str) -> Iterator[str]:
    """A fresh namespace, deleted after the test (deletion completes: the controllers run)."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique)))
    # Pods need the namespace's "default" ServiceAccount, which the controller-manager creates.
    wait_for(
        lambda: core.read_namespaced_service_account("default", unique),
        timeout=30,
        what=f"ServiceAccount default in {unique}",
    )
    yield unique
    _delete_sdworkers(core.api_client, unique)
    core.delete_namespace(unique)


def _delete_sdworkers(api: client.ApiClient, namespace: str) -> None:
    """SDWorkers go before their namespace: one left in a namespace still being deleted would keep placing
    runtimes on the nodes of the tests that follow (its node selector matches theirs). Bounded: a test that
    left a stuck finalizer finds out in its own invariants, not here."""
    custom = client.CustomObjectsApi(api)
    group, version, plural = c.GROUP, c.VERSION, c.SDWORKER_PLURAL
    try:
        custom.delete_collection_namespaced_custom_object(group, version, namespace, plural)
    except client.ApiException as exc:
        if exc.status == 404:  # no CRD in this test's cluster
            return
        raise
    with contextlib.suppress(WaitTimeout):
        wait_for(
            lambda: not custom.list_namespaced_custom_object(group, version, namespace, plural)["items"],
            timeout=60,
            what=f"the SDWorkers of {namespace} to be deleted",
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _startup:
        terminalreporter.write_line(line)
