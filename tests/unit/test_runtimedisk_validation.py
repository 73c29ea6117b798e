"""The parser refuses every invalid RuntimeDisk of the corpus naming the field; produced ones pass, agent too.

The same corpus runs against the real API server in tests/integration/test_crd_validation_runtimedisk.py.
"""

from __future__ import annotations

import pytest

from sdworker.api import constants as c
from sdworker.api.parse import SpecError, parse_runtimedisk
from sdworker_agent.plan import target_path
from tests.unit.invalid_runtimedisks import (
    INVALID_RUNTIMEDISKS,
    VALID_RUNTIMEDISKS,
    Case,
    ValidCase,
    mutated,
    produced_runtimedisk,
)
from tests.unit.test_crds import RUNTIMEDISK, rules


@pytest.mark.parametrize("case", INVALID_RUNTIMEDISKS, ids=[case.id for case in INVALID_RUNTIMEDISKS])
def test_parser_refuses_invalid_runtimedisk_naming_the_field(case: Case) -> None:
    with pytest.raises(SpecError) as caught:
        parse_runtimedisk(mutated(case.mutate))
    matching = [e for e in caught.value.errors if case.field in e.path and case.message in e.message]
    assert matching, f"no error on {case.field!r} saying {case.message!r}: {caught.value.errors}"


@pytest.mark.parametrize("case", VALID_RUNTIMEDISKS, ids=[case.id for case in VALID_RUNTIMEDISKS])
def test_what_the_operator_produces_is_accepted_by_parser_and_agent(case: ValidCase) -> None:
    body = produced_runtimedisk(case.runtime, node=case.node, cloud=case.cloud)
    rd = parse_runtimedisk(body)
    assert rd.spec.to_dict() == body["spec"]
    target, problem = target_path("/host", rd.spec.mount_path, c.MOUNT_ROOT)
    assert (target, problem) == (f"/host{c.MOUNT_ROOT}/{rd.spec.runtime_id}", "")


def test_corpus_is_large_and_ids_unique() -> None:
    ids = [case.id for case in INVALID_RUNTIMEDISKS]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
    fields = {case.field.split("[")[0] for case in INVALID_RUNTIMEDISKS}
    # Every spec field the agent acts on has cases.
    assert {
        "spec.mountPath",
        "spec.prefetch",
        "spec.imageDigest",
        "spec.nodeName",
        "spec.deviceName",
        "spec.diskName",
        "spec.zone",
    } <= fields


def test_runtimedisk_cel_rules_carry_the_parsers_messages() -> None:
    by_message = {" ".join(rule["message"].split()): rule["rule"] for rule in rules(RUNTIMEDISK)}
    for message in (
        c.RUNTIMEDISK_MESSAGE_MOUNT_PATH,
        c.MESSAGE_SHARED_DISK_TYPE,
        c.MESSAGE_PREFETCH_EMPTY,
        c.MESSAGE_PREFETCH_ABSOLUTE,
        c.MESSAGE_PREFETCH_DOTDOT,
    ):
        assert message in by_message, message
    assert f"'{c.MOUNT_ROOT}/' + self.spec.runtimeId" in by_message[c.RUNTIMEDISK_MESSAGE_MOUNT_PATH]
    for disk_type in c.SHARED_READ_ONLY_DISK_TYPES:
        assert f"'{disk_type}'" in by_message[c.MESSAGE_SHARED_DISK_TYPE]
