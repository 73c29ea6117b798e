"""Turn a raw RuntimeDisk into a typed, validated ``RuntimeDisk``: the CRD schema, then its CEL rules.

The operator and the privileged node agent both read RuntimeDisks with this, and the agent acts on the
spec (mount path, device name, prefetch paths, digest), so the spec is held to exactly what the CRD allows:
structure from the CRD's own schema (``sdworker.api.schema``), plus its CEL rules, written out here.
Status is checked from the schema too, except conditions, which are read leniently
(``sdworker.api.status_parsing``): they only carry transition times.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Final

from sdworker.api import constants as c
from sdworker.api import rules
from sdworker.api.schema import FieldError, Schema, crd_schema, object_schema, spec_schema, validate
from sdworker.api.status_parsing import parse_conditions, parse_time
from sdworker.api.types import (
    TIMING_FIELDS,
    DiskType,
    Phase,
    PrefetchStats,
    RuntimeDisk,
    RuntimeDiskSpec,
    RuntimeDiskStatus,
    RuntimeMode,
    Timings,
)

_FORMATS: Final = {"date-time": parse_time}


_PLURAL: Final = c.RUNTIMEDISK_PLURAL


@cache
def _object_schema() -> Schema:
    status: Schema = crd_schema(_PLURAL)["properties"]["status"]
    lenient = {k: v for k, v in status["properties"].items() if k != "conditions"}
    return object_schema(_PLURAL, status={**status, "properties": lenient})


def parse_runtimedisk(obj: Mapping[str, Any]) -> RuntimeDisk:
    """Parse a whole RuntimeDisk object (name, spec, status, whether it is being deleted)."""
    d = validate(_object_schema(), obj, lambda d: _spec_rules(d["spec"], "spec"), formats=_FORMATS)
    raw_status = obj.get("status")
    conditions = raw_status.get("conditions") if isinstance(raw_status, Mapping) else None
    return RuntimeDisk(
        name=d["metadata"]["name"],
        spec=_spec(d["spec"]),
        status=_status(d.get("status", {}), conditions),
        deleting=obj["metadata"].get("deletionTimestamp") is not None,
    )


def parse_runtimedisk_spec(spec: Mapping[str, Any]) -> RuntimeDiskSpec:
    return _spec(validate(spec_schema(_PLURAL), spec, lambda d: _spec_rules(d, "spec"), "spec"))


def _spec_rules(d: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    # CEL on the object: self.spec.mountPath == '/mnt/sdworker/' + self.spec.runtimeId
    if d["mountPath"] != f"{c.MOUNT_ROOT}/{d['runtimeId']}":
        errors.append(FieldError(f"{path}.mountPath", c.RUNTIMEDISK_MESSAGE_MOUNT_PATH))
    # CEL on the object: spec.mode != 'SharedReadOnly' || spec.diskType in [...]
    errors += rules.shared_disk_type_errors(d["diskType"], d["mode"], f"{path}.diskType")
    return errors + rules.prefetch_errors(d.get("prefetch", ()), f"{path}.prefetch")


def _spec(d: Mapping[str, Any]) -> RuntimeDiskSpec:
    return RuntimeDiskSpec(
        node_name=d["nodeName"],
        zone=d["zone"],
        instance=d["instance"],
        project=d["project"],
        image=d["image"],
        image_digest=d.get("imageDigest", ""),
        runtime_id=d["runtimeId"],
        disk_name=d["diskName"],
        device_name=d["deviceName"],
        disk_type=DiskType(d["diskType"]),
        disk_size_gb=d["diskSizeGb"],
        mode=RuntimeMode(d["mode"]),
        mount_path=d["mountPath"],
        prefetch=tuple(d.get("prefetch", ())),
    )


def _status(d: Mapping[str, Any], conditions: object) -> RuntimeDiskStatus:
    timings = d.get("timings", {})
    moments = {key: parse_time(timings[key]) if key in timings else None for key in TIMING_FIELDS}
    prefetch = d.get("prefetch")
    return RuntimeDiskStatus(
        phase=Phase(d.get("phase", Phase.PENDING)),
        device_path=d.get("devicePath", ""),
        message=d.get("message", ""),
        reason=d.get("reason", ""),
        observed_generation=d.get("observedGeneration"),
        conditions=parse_conditions(conditions),
        timings=Timings(
            node_created=moments["nodeCreated"],
            disk_created=moments["diskCreated"],
            attached=moments["attached"],
            mounted=moments["mounted"],
            verified=moments["verified"],
            prefetched=moments["prefetched"],
            durations_seconds={k: float(v) for k, v in timings.get("durationsSeconds", {}).items()},
        ),
        prefetch=None
        if prefetch is None
        else PrefetchStats(
            bytes=prefetch.get("bytes", 0),
            seconds=float(prefetch.get("seconds", 0.0)),
            throughput_mbps=float(prefetch.get("throughputMBps", 0.0)),
        ),
    )
