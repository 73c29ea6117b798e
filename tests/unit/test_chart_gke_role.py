"""The custom IAM role in hack/gke lists exactly the compute permissions the operator's calls need.

The compute methods are read from ``operator/sdworker/cloud/gce.py`` (every call is named there, for the
metrics and the error table); a new method without its permission here, or a permission nobody needs, fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "hack" / "gke" / "sdworker-operator-role.yaml"
GCE = REPO / "operator" / "sdworker" / "cloud" / "gce.py"

# compute method -> the IAM permissions GCE checks for it (as the operator calls it).
PERMISSIONS: dict[str, set[str]] = {
    "disks.insert": {"compute.disks.create", "compute.images.useReadOnly", "compute.disks.setLabels"},
    "disks.get": {"compute.disks.get"},
    "disks.list": {"compute.disks.list"},
    "disks.aggregatedList": {"compute.disks.list"},  # the orphan sweep over every zone
    "disks.delete": {"compute.disks.delete"},
    "disks.setLabels": {"compute.disks.setLabels"},
    "instances.get": {"compute.instances.get"},
    # READ_WRITE (PerNode) needs disks.use, READ_ONLY (SharedReadOnly) disks.useReadOnly; autoDelete=true.
    "instances.attachDisk": {
        "compute.instances.attachDisk",
        "compute.disks.use",
        "compute.disks.useReadOnly",
        "compute.instances.setDiskAutoDelete",
    },
    "instances.detachDisk": {"compute.instances.detachDisk"},
    "images.get": {"compute.images.get"},
    "images.getFromFamily": {"compute.images.getFromFamily"},
    "zoneOperations.wait": {"compute.zoneOperations.get"},
}


def used_methods() -> set[str]:
    return set(
        re.findall(
            r'"((?:disks|instances|images|zoneOperations|regionOperations)\.[A-Za-z]+)"', GCE.read_text()
        )
    )


def test_every_compute_method_the_operator_calls_is_known() -> None:
    assert used_methods() - PERMISSIONS.keys() == set()


def test_the_role_lists_exactly_the_needed_permissions() -> None:
    role = yaml.safe_load(ROLE.read_text())
    needed = set().union(*(PERMISSIONS[m] for m in used_methods()))
    granted = role["includedPermissions"]
    assert len(granted) == len(set(granted)), "duplicates"
    assert set(granted) == needed
    assert role["stage"] == "GA"
