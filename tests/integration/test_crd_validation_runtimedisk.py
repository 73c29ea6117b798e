"""The API server itself refuses invalid RuntimeDisks naming the field (corpus in tests/unit), and accepts
every RuntimeDisk the operator produces."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sdworker.api import constants as c
from tests.unit.invalid_runtimedisks import (
    INVALID_RUNTIMEDISKS,
    VALID_RUNTIMEDISKS,
    Case,
    ValidCase,
    mutated,
    produced_runtimedisk,
)

pytestmark = pytest.mark.usefixtures("crds")


def _create(api: client.ApiClient, body: dict[str, object]) -> dict[str, object]:
    # dryRun: full admission and validation, nothing stored, so no operator or agent ever sees it.
    created: dict[str, object] = client.CustomObjectsApi(api).create_cluster_custom_object(
        c.GROUP, c.VERSION, c.RUNTIMEDISK_PLURAL, body, dry_run="All"
    )
    return created


@pytest.mark.parametrize("case", INVALID_RUNTIMEDISKS, ids=[case.id for case in INVALID_RUNTIMEDISKS])
def test_api_server_refuses_invalid_runtimedisk(api: client.ApiClient, case: Case) -> None:
    with pytest.raises(ApiException) as rejected:
        _create(api, mutated(case.mutate))
    assert rejected.value.status == 422, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    assert case.field in message, message
    assert case.message in message, message


@pytest.mark.parametrize("case", VALID_RUNTIMEDISKS, ids=[case.id for case in VALID_RUNTIMEDISKS])
def test_api_server_accepts_what_the_operator_produces(api: client.ApiClient, case: ValidCase) -> None:
    body = produced_runtimedisk(case.runtime, node=case.node, cloud=case.cloud)
    created = _create(api, body)
    assert created["spec"] == body["spec"]
