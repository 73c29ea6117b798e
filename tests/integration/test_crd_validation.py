"""The API server itself rejects invalid SDWorkers with a message naming the field (table in tests/unit)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.unit.invalid_specs import INVALID_SPECS, VALID_VARIANTS, Case, ValidCase, mutated

GROUP, VERSION = "sdworker.dev", "v1alpha1"


def test_table_is_large_enough() -> None:
    assert len(INVALID_SPECS) >= 20


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("case", INVALID_SPECS, ids=[c.id for c in INVALID_SPECS])
def test_api_server_rejects_invalid_spec(api: client.ApiClient, namespace: str, case: Case) -> None:
    body = mutated(case.mutate, name="bad", namespace=namespace)
    with pytest.raises(ApiException) as rejected:
        # dryRun: full admission and validation, nothing stored, so the operator never sees it.
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "sdworkers", body, dry_run="All"
        )
    assert rejected.value.status == 422, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    assert case.field in message, message
    assert case.message in message, message


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("case", VALID_VARIANTS, ids=[c.id for c in VALID_VARIANTS])
def test_api_server_accepts_valid_variant(api: client.ApiClient, namespace: str, case: ValidCase) -> None:
    body = mutated(case.mutate, name="good", namespace=namespace)
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "sdworkers", body, dry_run="All"
    )
    assert created["metadata"]["name"] == "good"
