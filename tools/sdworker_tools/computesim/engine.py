"""The simulated compute API itself: resources, operations, quotas and faults, without HTTP.

Every API method is ``Engine.call(method, path, params, query, body)``: the HTTP layer only
routes. A call pays its synchronous latency, passes the regional quota, may draw an injected
fault, is checked for a replayed ``requestId``, and then a handler validates it under the lock.
A mutation that is accepted reserves what it needs at once (a disk is CREATING, an attachment is
pending), so concurrent requests see each other and a second READ_WRITE attach is refused with
the real error; the effect itself (copying the image, ``losetup``) runs when the operation
finishes. Operations on the same resource run one after another, as GCE queues a VM's
operations, and at most ``pending_ops_per_resource`` may wait.

Owns all simulated state and the block devices behind it (through ``blockdev``); ``close``
releases every loop device and file it created.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import access, blockdev, errors, filters, iam
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.errors import ApiError, OperationFailure
from sdworker_tools.computesim.idempotency import InvalidRequestId, RequestIdCache, validate_request_id
from sdworker_tools.computesim.latency import LatencyProfile, profile
from sdworker_tools.computesim.links import Links, parse_image, parse_zonal
from sdworker_tools.computesim.models import (
    AttachedDisk,
    Disk,
    Image,
    ImageKey,
    Instance,
    Operation,
    ZoneKey,
)
from sdworker_tools.computesim.quota import RegionalQuota, region_of
from sdworker_tools.computesim.scheduler import Scheduler

log = logging.getLogger(__name__)

GIB = blockdev.GIB
MAX_RESULTS = 500
DISK_TYPES = (
    "pd-standard",
    "pd-balanced",
    "pd-ssd",
    "pd-extreme",
    "hyperdisk-balanced",
    "hyperdisk-ml",
    "hyperdisk-throughput",
    "hyperdisk-extreme",
)
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_NAME_RULE = "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'"


@dataclass
class Call:
    """One API request, as the handlers see it."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]
    request_id: str | None = None


@dataclass
class _Work:
    effect: Callable[[], None]
    abort: Callable[[OperationFailure], None] | None
    injected: OperationFailure | None


@dataclass
class _Method:
    handler: Callable[[Call], dict[str, Any]]
    write: bool
    counted: bool = True  # counts against the read quota (operation polling has its own meter)


@dataclass
class LogEntry:
    seq: int
    t: float  # seconds since the simulator started (monotonic)
    method: str
    path: str
    status: int
    write: bool
    reason: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None
    replayed: bool = False
    operation: str | None = None
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "t": round(self.t, 6),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "write": self.write,
            "reason": self.reason,
            "query": self.query,
            "requestId": self.request_id,
            "replayed": self.replayed,
            "operation": self.operation,
            "fault": self.fault,
        }


@dataclass
class _Outcome:
    operation: str | None = None
    replayed: bool = False
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, config: SimConfig, links: Links, state_dir: Path, dev_base: Path) -> None:
        self.links = links
        self.state_dir = state_dir
        self.dev_base = dev_base
        self._config = config
        self._profile: LatencyProfile = profile(config.latency).with_overrides(config.latency_overrides)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._rng = random.Random(config.seed)
        self._write_quota = RegionalQuota(config.write_quota_per_s, config.write_quota_burst)
        self._read_quota = RegionalQuota(config.read_quota_per_s)
        self._request_ids: RequestIdCache[Operation] = RequestIdCache()
        self._images: dict[ImageKey, Image] = {}
        self._disks: dict[ZoneKey, Disk] = {}
        self._instances: dict[ZoneKey, Instance] = {}
        self._ops: dict[tuple[str, str, str], Operation] = {}
        self._op_log: list[Operation] = []
        self._work: dict[str, _Work] = {}
        self._queues: dict[str, collections.deque[Operation]] = {}
        self._pending: collections.Counter[str] = collections.Counter()
        self._warm: set[tuple[ImageKey, str]] = set()
        self._faults: list[FaultRule] = []
        self._requests: list[LogEntry] = []
        self._seq = itertools.count(1)  # image creation order
        self._request_seq = itertools.count(1)
        self._ips = itertools.count(2)
        self._t0 = time.monotonic()
        self._stopping = False
        self._scheduler = Scheduler()
        self._methods: dict[str, _Method] = {
            "zones.list": _Method(self._zones_list, write=False),
            "zones.get": _Method(self._zones_get, write=False),
            "images.get": _Method(self._images_get, write=False),
            "images.getFromFamily": _Method(self._images_get_from_family, write=False),
            "images.list": _Method(self._images_list, write=False),
            "images.insert": _Method(self._images_insert, write=True),
            "images.delete": _Method(self._images_delete, write=True),
            "images.deprecate": _Method(self._images_deprecate, write=True),
            "images.setLabels": _Method(self._images_set_labels, write=True),
            "disks.get": _Method(self._disks_get, write=False),
            "disks.list": _Method(self._disks_list, write=False),
            "disks.aggregatedList": _Method(self._disks_aggregated, write=False),
            "disks.insert": _Method(self._disks_insert, write=True),
            "disks.delete": _Method(self._disks_delete, write=True),
            "disks.setLabels": _Method(self._disks_set_labels, write=True),
            "instances.get": _Method(self._instances_get, write=False),
            "instances.list": _Method(self._instances_list, write=False),
            "instances.aggregatedList": _Method(self._instances_aggregated, write=False),
            "instances.insert": _Method(self._instances_insert, write=True),
            "instances.delete": _Method(self._instances_delete, write=True),
            "instances.attachDisk": _Method(self._instances_attach, write=True),
            "instances.detachDisk": _Method(self._instances_detach, write=True),
            "instances.setDiskAutoDelete": _Method(self._instances_set_auto_delete, write=True),
            "instances.setLabels": _Method(self._instances_set_labels, write=True),
            "zoneOperations.get": _Method(self._operations_get, write=False, counted=False),
            "zoneOperations.list": _Method(self._operations_list, write=False),
            "zoneOperations.wait": _Method(self._operations_wait, write=False, counted=False),
            "globalOperations.get": _Method(self._operations_get, write=False, counted=False),
            "globalOperations.list": _Method(self._operations_list, write=False),
            "globalOperations.wait": _Method(self._operations_wait, write=False, counted=False),
        }

    # ------------------------------------------------------------------ the call pipeline

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._methods)

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        query: Mapping[str, str],
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        spec = self._methods[method]
        with self._lock:
            prof = self._profile
        delay = prof.call_write_s if spec.write else prof.call_read_s
        if delay > 0:
            time.sleep(delay)
        started = time.monotonic()
        outcome = _Outcome()
        status, reason = 200, None
        request_id = query.get("requestId") if spec.write else None
        try:
            return self._call(spec, Call(method, path, params, query, body or {}), outcome)
        except ApiError as exc:
            status, reason = exc.code, exc.reason
            raise
        finally:
            with self._lock:
                self._requests.append(
                    LogEntry(
                        seq=next(self._request_seq),
                        t=started - self._t0,
                        method=method,
                        path=path,
                        status=status,
                        write=spec.write,
                        reason=reason,
                        query={k: v for k, v in query.items() if k not in ("$alt", "alt")},
                        request_id=request_id,
                        replayed=outcome.replayed,
                        operation=outcome.operation,
                        fault=outcome.fault,
                    )
                )

    def _call(self, spec: _Method, call: Call, outcome: _Outcome) -> dict[str, Any]:
        scope = region_of(call.params["zone"]) if "zone" in call.params else "global"
        if spec.write and not self._write_quota.admit(scope):
            raise errors.rate_limited(scope, "write")
        if not spec.write and spec.counted and not self._read_quota.admit(scope):
            raise errors.rate_limited(scope, "read")
        http_fault = self._take_call_fault(call, spec.write)
        if http_fault is not None:
            outcome.fault = f"http {http_fault}"
            raise errors.backend_error(http_fault)
        with self._lock:
            denied = self._take_rule(call, "permission")
        if denied is not None:
            outcome.fault = "permission"
            raise iam.permission_denied(call.method, call.path)
        if not spec.write:
            return spec.handler(call)
        if call.query.get("requestId"):
            try:
                call.request_id = validate_request_id(call.query["requestId"])
            except InvalidRequestId as exc:
                raise errors.invalid_field("requestId", call.query["requestId"], str(exc)) from exc
        # The replay check and the handler's reservation happen under one lock hold, so two
        # concurrent copies of a request with the same requestId still act once.
        with self._lock:
            remembered = None
            if call.request_id:
                remembered = self._request_ids.get(call.params.get("project", ""), call.request_id)
            if remembered is not None:
                outcome.replayed = True
                outcome.operation = remembered.value.name
                if remembered.signature != self._signature(call):
                    log.warning(
                        "computesim: requestId %s reused for %s (first used for %s)",
                        call.request_id,
                        self._signature(call),
                        remembered.signature,
                    )
                return remembered.value.to_json(self.links, time.monotonic())
            result = spec.handler(call)
            outcome.operation = result.get("name")
        if self._take_lost_response(call):
            outcome.fault = "lost_response"
            raise errors.backend_error(503)
        return result

    @staticmethod
    def _signature(call: Call) -> str:
        return f"{call.method} {call.path}"

    def _take_rule(self, call: Call, kind: str) -> FaultRule | None:
        for rule in self._faults:
            if rule.kind == kind and rule.matches(call.method, call.path):
                if rule.count > 0:
                    rule.count -= 1
                return rule
        return None

    def _take_call_fault(self, call: Call, write: bool) -> int | None:
        with self._lock:
            rule = self._take_rule(call, "http")
            if rule is not None:
                return rule.http_status
            rate = self._config.http_error_rate
            if rate and self._rng.random() < rate:
                return self._rng.choice((500, 503))
        return None

    def _take_lost_response(self, call: Call) -> bool:
        with self._lock:
            if self._take_rule(call, "lost_response") is not None:
                return True
            rate = self._config.lost_response_rate
            return bool(rate and self._rng.random() < rate)

    def _take_operation_fault(self, call: Call) -> str | None:
        rule = self._take_rule(call, "operation")
        if rule is not None:
            return rule.code
        rate = self._config.operation_error_rate
        if rate and self._rng.random() < rate:
            return self._rng.choice(self._config.operation_error_codes)
        return None

    # ------------------------------------------------------------------ operations

    def _new_id(self) -> str:
        return str(self._rng.getrandbits(62) | (1 << 62))

    def _op_name(self) -> str:
        r = self._rng
        return (
            f"operation-{int(time.time() * 1000)}-{r.getrandbits(52):013x}"
            f"-{r.getrandbits(32):08x}-{r.getrandbits(32):08x}"
        )

    def _admit(self, resources: tuple[str, ...]) -> None:
        """403 "Too many pending operations" if any resource's queue is full. Lock held."""
        limit = self._config.pending_ops_per_resource
        if any(self._pending[r] >= limit for r in resources):
            raise errors.too_many_pending()

    def _start_operation(
        self,
        call: Call,
        *,
        project: str,
        zone: str | None,
        target_link: str,
        target_id: str,
        resources: tuple[str, ...],
        latency_s: float,
        effect: Callable[[], None],
        abort: Callable[[OperationFailure], None] | None = None,
    ) -> dict[str, Any]:
        """Register an accepted mutation's operation and queue it. Lock held."""
        op = Operation(
            project=project,
            zone=zone,
            name=self._op_name(),
            id=self._new_id(),
            method=call.method,
            target_link=target_link,
            target_id=target_id,
            inserted=time.time(),
            request_id=call.request_id,
            queue_key=resources[0],
            resources=resources,
            latency_s=latency_s,
        )
        code = self._take_operation_fault(call)
        injected = None
        if code is not None:
            injected = OperationFailure.from_code(
                code,
                target=target_link,
                zone=self.links.zone(project, zone or ""),
                region=region_of(zone) if zone else "global",
            )
        self._ops[(project, zone or "global", op.name)] = op
        self._op_log.append(op)
        self._work[op.name] = _Work(effect, abort, injected)
        if call.request_id:
            self._request_ids.remember(project, call.request_id, self._signature(call), op)
        for resource in resources:
            self._pending[resource] += 1
        queue = self._queues.setdefault(op.queue_key, collections.deque())
        queue.append(op)
        if len(queue) == 1:
            self._scheduler.call_later(self._profile.pending_s, lambda: self._run(op))
        return op.to_json(self.links, time.monotonic())

    def _run(self, op: Operation) -> None:
        with self._lock:
            if self._stopping:
                return
            op.status = "RUNNING"
            op.started = time.time()
            op.started_mono = time.monotonic()
        self._scheduler.call_later(op.latency_s, lambda: self._finish(op))

    def _finish(self, op: Operation) -> None:
        with self._lock:
            work = self._work.pop(op.name)
        failure = work.injected
        if failure is None:
            try:
                work.effect()
            except ApiError as exc:
                failure = OperationFailure.from_api_error(exc)
            except blockdev.BlockDeviceError as exc:
                failure = OperationFailure("INTERNAL_ERROR", str(exc), 500)
            except Exception as exc:
                log.exception("computesim: %s %s failed", op.method, op.target_link)
                failure = OperationFailure("INTERNAL_ERROR", f"simulator bug: {exc!r}", 500)
        if failure is not None and work.abort is not None:
            try:
                work.abort(failure)
            except Exception:
                log.exception("computesim: undoing %s %s failed", op.method, op.target_link)
        with self._lock:
            op.status = "DONE"
            op.ended = time.time()
            op.failure = failure
            for resource in op.resources:
                self._pending[resource] -= 1
                if self._pending[resource] <= 0:
                    del self._pending[resource]
            queue = self._queues[op.queue_key]
            queue.popleft()
            if queue:
                nxt = queue[0]
                self._scheduler.call_later(self._profile.pending_s, lambda: self._run(nxt))
            else:
                del self._queues[op.queue_key]
            self._changed.notify_all()

    def _find_operation(self, call: Call) -> Operation:
        project = call.params["project"]
        scope = call.params.get("zone", "global")
        op = self._ops.get((project, scope, call.params["operation"]))
        if op is None:
            where = f"zones/{scope}" if scope != "global" else "global"
            raise errors.not_found(f"projects/{project}/{where}/operations/{call.params['operation']}")
        return op

    def _operations_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            self._known_zone(call)
            return self._find_operation(call).to_json(self.links, time.monotonic())

    def _operations_wait(self, call: Call) -> dict[str, Any]:
        with self._changed:
            self._known_zone(call)
            op = self._find_operation(call)
            deadline = time.monotonic() + self._config.operation_wait_timeout_s
            while op.status != "DONE" and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return op.to_json(self.links, time.monotonic())

    def _operations_list(self, call: Call) -> dict[str, Any]:
        with self._lock:
            project = call.params["project"]
            zone = call.params.get("zone")
            if zone is not None:
                self._known_zone(call)
            now = time.monotonic()
            items = [
                o.to_json(self.links, now) for o in self._op_log if o.project == project and o.zone == zone
            ]
        where = f"zones/{zone}" if zone else "global"
        return _page(
            call, "compute#operationList", f"projects/{project}/{where}/operations", items, self.links
        )

    # ------------------------------------------------------------------ zones

    def _known_zone(self, call: Call) -> str:
        zone = call.params.get("zone", "")
        if zone and zone not in self._config.zones:
            raise errors.invalid_field("zone", zone, "Unknown zone.")
        return zone

    def _zone_json(self, project: str, zone: str) -> dict[str, Any]:
        return {
            "kind": "compute#zone",
            "id": str(2000 + self._config.zones.index(zone)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": zone,
            "description": zone,
            "status": "UP",
            "region": self.links.region(project, region_of(zone)),
            "selfLink": self.links.zone(project, zone),
            "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
            "supportsPzs": False,
        }

    def _zones_list(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        items = [self._zone_json(project, z) for z in self._config.zones]
        return _page(call, "compute#zoneList", f"projects/{project}/zones", items, self.links)

    def _zones_get(self, call: Call) -> dict[str, Any]:
        zone = call.params["zone"]
        if zone not in self._config.zones:
            raise errors.not_found(f"projects/{call.params['project']}/zones/{zone}")
        return self._zone_json(call.params["project"], zone)

    # ------------------------------------------------------------------ images

    def _image(self, project: str, name: str) -> Image:
        image = self._images.get((project, name))
        if image is None:
            raise errors.not_found(f"projects/{project}/global/images/{name}")
        return image

    def _newest_in_family(self, project: str, family: str) -> Image:
        candidates = [
            i
            for i in self._images.values()
            if i.project == project and i.family == family and i.status == "READY" and not i.is_deprecated()
        ]
        if not candidates:
            raise errors.not_found(f"projects/{project}/global/images/family/{family}")
        return max(candidates, key=lambda i: i.seq)

    def _images_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._image(call.params["project"], call.params["image"]).to_json(self.links)

    def _images_get_from_family(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._newest_in_family(call.params["project"], call.params["family"]).to_json(self.links)

    def _images_list(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            items = [i.to_json(self.links) for i in self._images.values() if i.project == project]
        return _page(call, "compute#imageList", f"projects/{project}/global/images", items, self.links)

    def _resolve_raw_source(self, source: str) -> Path:
        if source.startswith("file://"):
            return Path(source.removeprefix("file://"))
        if source.startswith("/"):
            return Path(source)
        for prefix in ("gs://", "https://storage.googleapis.com/", "https://storage.cloud.google.com/"):
            if source.startswith(prefix):
                if self._config.gcs_root is None:
                    raise errors.invalid_field(
                        "rawDisk.source",
                        source,
                        "The simulator has no gcs_root to map Cloud Storage URLs to.",
                    )
                return self._config.gcs_root / source.removeprefix(prefix)
        raise errors.invalid_field(
            "rawDisk.source", source, "Expected a gs://, https://storage... or file URL."
        )

    def _images_insert(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        body = call.body
        name = _valid_name(body.get("name"))
        raw = body.get("rawDisk") or {}
        source = raw.get("source")
        if not source:
            raise errors.required("resource.rawDisk.source")
        path = self._resolve_raw_source(str(source))
        if not path.is_file():
            raise errors.invalid_field("rawDisk.source", source, "The file does not exist.")
        image_labels = labelmod.validate(body.get("labels"))
        family = body.get("family")
        if family is not None:
            _valid_name(family, "resource.family")
        archive_size = path.stat().st_size
        with self._lock:
            if (project, name) in self._images:
                raise errors.already_exists(f"projects/{project}/global/images/{name}")
            key = f"image:{project}/{name}"
            self._admit((key,))
            image = Image(
                project=project,
                name=name,
                id=self._new_id(),
                created=time.time(),
                seq=next(self._seq),
                family=family,
                description=str(body.get("description", "")),
                labels=image_labels,
                archive_size_bytes=archive_size,
                raw_source=str(source),
            )
            self._images[image.key] = image
            latency = self._profile.sample(call.method, self._rng) + self._profile.image_per_gib_s * (
                archive_size / GIB
            )
            requested_gb = int(body.get("diskSizeGb", 0) or 0)

            def effect() -> None:
                file = None
                size = archive_size
                if self._config.block_devices:
                    file = self.state_dir / "images" / project / f"{name}-{image.id}.raw"
                    size = blockdev.materialize_image(path, file)
                with self._lock:
                    image.file = file
                    image.disk_size_gb = max(requested_gb, _gib_ceil(size))
                    image.status = "READY"

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    self._images.pop(image.key, None)
                    if image.file is not None:
                        blockdev.remove_file(image.file)

            return self._start_operation(
                call,
                project=project,
                zone=None,
                target_link=self.links.image(project, name),
                target_id=image.id,
                resources=(key,),
                latency_s=latency,
                effect=effect,
                abort=abort,
            )

    def _images_delete(self, call: Call) -> dict[str, Any]:
        project, name = call.params["project"], call.params["image"]
        with self._lock:
            image = self._image(project, name)
            key = f"image:{project}/{name}"
            self._admit((key,))

            def effect() -> None:
                with self._lock:
                    self._images.pop(image.key, None)
                if image.file is not None:
                    blockdev.remove_file(image.file)

            return self._start_operation(
                call,
                project=project,
                zone=None,
                target_link=self.links.image(project, name),
                target_id=image.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
            )

    def _images_deprecate(self, call: Call) -> dict[str, Any]:
        project, name = call.params["project"], call.params["image"]
        state = call.body.get("state", "ACTIVE")
        if state not in ("ACTIVE", "DEPRECATED", "OBSOLETE", "DELETED"):
            raise errors.invalid_field("deprecationStatus.state", state, "Unknown deprecation state.")
        with self._lock:
            image = self._image(project, name)
            key = f"image:{project}/{name}"
            self._admit((key,))
            deprecated = {k: str(v) for k, v in call.body.items() if v is not None}

            def effect() -> None:
                with self._lock:
                    image.deprecated = None if state == "ACTIVE" else deprecated

            return self._start_operation(
                call,
                project=project,
                zone=None,
                target_link=self.links.image(project, name),
                target_id=image.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
            )

    def _images_set_labels(self, call: Call) -> dict[str, Any]:
        project, name = call.params["project"], call.params["resource"]
        with self._lock:
            image = self._image(project, name)
            return self._set_labels(
                call,
                image,
                project=project,
                zone=None,
                key=f"image:{project}/{name}",
                target_link=self.links.image(project, name),
            )

    def _set_labels(
        self,
        call: Call,
        resource: Image | Disk | Instance,
        *,
        project: str,
        zone: str | None,
        key: str,
        target_link: str,
    ) -> dict[str, Any]:
        """setLabels for any resource. Lock held. The fingerprint is compared and the labels set at
        acceptance, so two racing claims (a warm-pool disk, say) cannot both pass the check."""
        new_labels = labelmod.validate(call.body.get("labels"))
        self._admit((key,))
        labelmod.check_fingerprint(resource.labels, call.body.get("labelFingerprint"))
        resource.labels = new_labels
        return self._start_operation(
            call,
            project=project,
            zone=zone,
            target_link=target_link,
            target_id=resource.id,
            resources=(key,),
            latency_s=self._profile.sample(call.method, self._rng),
            effect=lambda: None,
        )

    # ------------------------------------------------------------------ disks

    def _disk(self, project: str, zone: str, name: str) -> Disk:
        disk = self._disks.get((project, zone, name))
        if disk is None:
            raise errors.not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return disk

    def _disk_users(self, key: ZoneKey) -> list[tuple[Instance, AttachedDisk]]:
        """Every attachment of a disk, pending ones included."""
        return [(inst, att) for inst in self._instances.values() for att in inst.disks if att.disk == key]

    def _disks_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            zone = self._known_zone(call)
            return self._disk(call.params["project"], zone, call.params["disk"]).to_json(self.links)

    def _disks_list(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            items = [
                d.to_json(self.links) for d in self._disks.values() if d.project == project and d.zone == zone
            ]
        return _page(call, "compute#diskList", f"projects/{project}/zones/{zone}/disks", items, self.links)

    def _disks_aggregated(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            items = [d.to_json(self.links) for d in self._disks.values() if d.project == project]
        return self._aggregated(call, "disks", "compute#diskAggregatedList", items)

    def _aggregated(
        self, call: Call, field_name: str, kind: str, items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        project = call.params["project"]
        expr = _filter(call)
        scoped: dict[str, Any] = {}
        for zone in self._config.zones:
            link = self.links.zone(project, zone)
            in_zone = [i for i in items if i["zone"] == link and expr.matches(i)]
            if in_zone:
                scoped[f"zones/{zone}"] = {field_name: sorted(in_zone, key=lambda i: str(i["name"]))}
            else:
                scoped[f"zones/{zone}"] = {
                    "warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": "There are no results for scope 'zones/" + zone + "' on this page.",
                        "data": [{"key": "scope", "value": f"zones/{zone}"}],
                    }
                }
        return {
            "kind": kind,
            "id": f"projects/{project}/aggregated/{field_name}",
            "items": scoped,
            "selfLink": f"{self.links.project(project)}/aggregated/{field_name}",
        }

    def _disks_insert(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        body = call.body
        name = _valid_name(body.get("name"))
        disk_labels = labelmod.validate(body.get("labels"))
        with self._lock:
            zone = self._known_zone(call)
            type_name = "pd-standard"
            if body.get("type"):
                ref = parse_zonal(
                    str(body["type"]), "diskTypes", project=project, zone=zone, field_name="resource.type"
                )
                if ref.zone != zone:
                    raise errors.invalid_field(
                        "resource.type", body["type"], "Disk type must be in the disk's zone."
                    )
                if ref.name not in DISK_TYPES:
                    raise errors.not_found(f"projects/{ref.project}/zones/{ref.zone}/diskTypes/{ref.name}")
                type_name = ref.name
            access_mode = access.access_mode_for_insert(type_name, body.get("accessMode"))
            source = body.get("sourceImage") or call.query.get("sourceImage")
            image: Image | None = None
            if source:
                ref = parse_image(str(source), project=project, field_name="resource.sourceImage")
                image = (
                    self._newest_in_family(ref.project, ref.name)
                    if ref.family
                    else self._image(ref.project, ref.name)
                )
                if image.status != "READY":
                    raise errors.not_ready(f"projects/{image.project}/global/images/{image.name}")
            size_field = body.get("sizeGb")
            if size_field is None:
                size_gb = image.disk_size_gb if image is not None else 10
            else:
                try:
                    size_gb = int(size_field)
                except (TypeError, ValueError):
                    raise errors.invalid_field("resource.sizeGb", size_field, "Must be an integer.") from None
            if size_gb < 1:
                raise errors.invalid_field("resource.sizeGb", size_gb, "Must be at least 1.")
            if image is not None and size_gb < image.disk_size_gb:
                raise errors.invalid(
                    f"Requested disk size cannot be smaller than the image size ({image.disk_size_gb} GB)"
                )
            if (project, zone, name) in self._disks:
                raise errors.already_exists(f"projects/{project}/zones/{zone}/disks/{name}")
            key = f"disk:{project}/{zone}/{name}"
            self._admit((key,))
            disk = Disk(
                project=project,
                zone=zone,
                name=name,
                id=self._new_id(),
                created=time.time(),
                size_gb=size_gb,
                type_name=type_name,
                access_mode=access_mode,
                description=str(body.get("description", "")),
                labels=disk_labels,
                source_image=image.key if image else None,
                source_image_id=image.id if image else None,
            )
            self._disks[disk.key] = disk
            extra = 0.0
            if image is not None and (image.key, zone) not in self._warm:
                extra = self._profile.first_in_zone_extra(image.disk_size_gb)
            latency = self._profile.sample(call.method, self._rng, extra_s=extra)
            image_file = image.file if image is not None else None
            image_key = image.key if image is not None else None

            def effect() -> None:
                file = None
                if self._config.block_devices:
                    file = self.state_dir / "disks" / project / zone / f"{name}-{disk.id}.raw"
                    if image_file is not None:
                        blockdev.clone_disk(image_file, file, size_gb * GIB)
                    else:
                        blockdev.create_blank(file, size_gb * GIB)
                with self._lock:
                    disk.file = file
                    disk.status = "READY"
                    if image_key is not None:
                        self._warm.add((image_key, zone))

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    if self._disks.get(disk.key) is disk:
                        del self._disks[disk.key]
                if disk.file is not None:
                    blockdev.remove_file(disk.file)

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.disk(project, zone, name),
                target_id=disk.id,
                resources=(key,),
                latency_s=latency,
                effect=effect,
                abort=abort,
            )

    def _disks_delete(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            disk = self._disk(project, zone, call.params["disk"])
            if disk.status == "CREATING":
                raise errors.not_ready(f"projects/{project}/zones/{zone}/disks/{disk.name}")
            users = self._disk_users(disk.key)
            if users:
                raise errors.in_use(
                    f"projects/{project}/zones/{zone}/disks/{disk.name}",
                    f"projects/{project}/zones/{zone}/instances/{users[0][0].name}",
                )
            key = f"disk:{project}/{zone}/{disk.name}"
            self._admit((key,))
            previous = disk.status
            disk.status = "DELETING"

            def effect() -> None:
                with self._lock:
                    if self._disks.get(disk.key) is disk:
                        del self._disks[disk.key]
                if disk.file is not None:
                    blockdev.remove_file(disk.file)

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    disk.status = previous

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.disk(project, zone, disk.name),
                target_id=disk.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
                abort=abort,
            )

    def _disks_set_labels(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            disk = self._disk(project, zone, call.params["resource"])
            return self._set_labels(
                call,
                disk,
                project=project,
                zone=zone,
                key=f"disk:{project}/{zone}/{disk.name}",
                target_link=self.links.disk(project, zone, disk.name),
            )

    # ------------------------------------------------------------------ instances

    def _instance(self, project: str, zone: str, name: str) -> Instance:
        inst = self._instances.get((project, zone, name))
        if inst is None:
            raise errors.not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return inst

    def _instance_json(self, inst: Instance) -> dict[str, Any]:
        sizes = {d.disk: self._disks[d.disk].size_gb for d in inst.disks if d.disk in self._disks}
        return inst.to_json(self.links, sizes)

    def dev_root(self, instance: str) -> Path:
        return self.dev_base / instance / "dev"

    def _instances_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            zone = self._known_zone(call)
            return self._instance_json(self._instance(call.params["project"], zone, call.params["instance"]))

    def _instances_list(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            items = [
                self._instance_json(i)
                for i in self._instances.values()
                if i.project == project and i.zone == zone
            ]
        return _page(
            call, "compute#instanceList", f"projects/{project}/zones/{zone}/instances", items, self.links
        )

    def _instances_aggregated(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            items = [self._instance_json(i) for i in self._instances.values() if i.project == project]
        return self._aggregated(call, "instances", "compute#instanceAggregatedList", items)

    def _new_instance(
        self, project: str, zone: str, name: str, machine_type: str, inst_labels: dict[str, str]
    ) -> Instance:
        """Lock held."""
        if (project, zone, name) in self._instances:
            raise errors.already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
        clash = [i for i in self._instances.values() if i.name == name]
        if clash and self._config.block_devices:
            # Dev roots are keyed by instance name alone (kwok node names are unique), so refuse a twin.
            raise errors.invalid_field(
                "resource.name", name, "The simulator keys dev roots by instance name."
            )
        n = next(self._ips)
        inst = Instance(
            project=project,
            zone=zone,
            name=name,
            id=self._new_id(),
            created=time.time(),
            machine_type=machine_type,
            dev_root=self.dev_root(name),
            ip=f"10.128.{n // 250}.{n % 250 + 2}",
            labels=inst_labels,
        )
        self._instances[inst.key] = inst
        return inst

    def _instances_insert(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        body = call.body
        name = _valid_name(body.get("name"))
        inst_labels = labelmod.validate(body.get("labels"))
        for spec in body.get("disks") or []:
            if "initializeParams" in spec or not spec.get("source"):
                raise errors.invalid(
                    "The simulator's instances.insert takes existing disks only (disks[].source); "
                    "create boot disks with disks.insert first."
                )
        with self._lock:
            zone = self._known_zone(call)
            machine_type = "n1-standard-4"
            if body.get("machineType"):
                mt = parse_zonal(
                    str(body["machineType"]),
                    "machineTypes",
                    project=project,
                    zone=zone,
                    field_name="resource.machineType",
                )
                machine_type = mt.name
            key = f"instance:{project}/{zone}/{name}"
            if (project, zone, name) in self._instances:
                raise errors.already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
            self._admit((key,))
            inst = self._new_instance(project, zone, name, machine_type, inst_labels)
            attachments = []
            try:
                for i, spec in enumerate(body.get("disks") or []):
                    attachments.append(
                        self._reserve_attachment(inst, spec, index=i, boot=bool(spec.get("boot")))
                    )
            except ApiError:
                del self._instances[inst.key]
                raise

            def effect() -> None:
                for att in attachments:
                    self._plug(inst, att)
                with self._lock:
                    inst.status = "RUNNING"

            def abort(failure: OperationFailure) -> None:
                for att in attachments:
                    self._unplug(inst, att)
                with self._lock:
                    self._instances.pop(inst.key, None)

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.instance(project, zone, name),
                target_id=inst.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
                abort=abort,
            )

    def _instances_delete(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            inst = self._instance(project, zone, call.params["instance"])
            key = f"instance:{project}/{zone}/{inst.name}"
            self._admit((key,))
            inst.status = "STOPPING"

            def effect() -> None:
                with self._lock:
                    attachments = list(inst.disks)
                for att in attachments:
                    self._unplug(inst, att)
                doomed = []
                with self._lock:
                    for att in attachments:
                        disk = self._disks.get(att.disk)
                        # GCE keeps an autoDelete disk that another VM still uses.
                        if (
                            disk is not None
                            and att.auto_delete
                            and not att.pending
                            and not self._disk_users(disk.key)
                        ):
                            del self._disks[disk.key]
                            doomed.append(disk)
                    self._instances.pop(inst.key, None)
                for disk in doomed:
                    if disk.file is not None:
                        blockdev.remove_file(disk.file)
                _prune_dev_root(inst.dev_root, self.dev_base)

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    inst.status = "RUNNING"

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.instance(project, zone, inst.name),
                target_id=inst.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
                abort=abort,
            )

    def _reserve_attachment(
        self, inst: Instance, spec: Mapping[str, Any], *, index: int | None = None, boot: bool = False
    ) -> AttachedDisk:
        """Validate an attach against every attachment, pending ones included, and reserve it. Lock held."""
        source = spec.get("source")
        if not source:
            raise errors.required("resource.source")
        ref = parse_zonal(
            str(source), "disks", project=inst.project, zone=inst.zone, field_name="resource.source"
        )
        if ref.zone != inst.zone:
            raise errors.invalid_field(
                "resource.source", source, "Disk must be in the same zone as the instance."
            )
        disk = self._disk(ref.project, ref.zone or inst.zone, ref.name)
        disk_path = f"projects/{disk.project}/zones/{disk.zone}/disks/{disk.name}"
        if disk.status != "READY":
            raise errors.not_ready(disk_path)
        mode = spec.get("mode") or "READ_WRITE"
        if mode not in ("READ_WRITE", "READ_ONLY"):
            raise errors.invalid_field("resource.mode", mode, "Must be READ_WRITE or READ_ONLY.")
        others = []
        for other, att in self._disk_users(disk.key):
            user = f"projects/{other.project}/zones/{other.zone}/instances/{other.name}"
            if other is inst:
                raise errors.in_use(disk_path, user)
            others.append((user, att.mode))
        access.check_attach(
            disk_path=disk_path,
            disk_type=disk.type_name,
            access_mode=disk.access_mode,
            attach_mode=mode,
            others=others,
        )
        if index is None:
            index = max((a.index for a in inst.disks), default=0) + 1
        device_name = spec.get("deviceName") or f"persistent-disk-{index}"
        if not isinstance(device_name, str) or _NAME.fullmatch(device_name) is None:
            raise errors.invalid_field("resource.deviceName", device_name, _NAME_RULE)
        if inst.attachment(device_name, include_pending=True) is not None:
            raise errors.invalid_field(
                "resource.deviceName", device_name, "A disk with this device name is already attached."
            )
        att = AttachedDisk(
            disk=disk.key,
            device_name=device_name,
            mode=mode,
            auto_delete=bool(spec.get("autoDelete", False)),
            index=index,
            boot=boot,
        )
        inst.disks.append(att)
        return att

    def _plug(self, inst: Instance, att: AttachedDisk) -> None:
        """The attach's effect: loop device, by-id symlinks, then the attachment is visible."""
        with self._lock:
            disk = self._disks.get(att.disk)
            file = disk.file if disk is not None else None
        if disk is None:
            raise errors.not_found(f"projects/{att.disk[0]}/zones/{att.disk[1]}/disks/{att.disk[2]}")
        if self._config.block_devices and file is not None:
            att.loop = blockdev.attach_loop(file, read_only=att.mode == "READ_ONLY")
            try:
                blockdev.publish(inst.dev_root, att.device_name, att.loop)
            except OSError as exc:
                blockdev.detach_loop(att.loop, file)
                att.loop = None
                raise blockdev.BlockDeviceError(f"publishing {att.device_name}: {exc}") from exc
        with self._lock:
            att.pending = False
            disk.users.append(inst.key)
            disk.last_attach = time.time()

    def _unplug(self, inst: Instance, att: AttachedDisk) -> None:
        """Detach's effect (and attach's undo): symlinks, loop device, bookkeeping."""
        blockdev.unpublish(inst.dev_root, att.device_name)
        with self._lock:
            disk = self._disks.get(att.disk)
            file = disk.file if disk is not None else None
        if att.loop is not None and file is not None:
            blockdev.detach_loop(att.loop, file)
        with self._lock:
            att.loop = None
            if att in inst.disks:
                inst.disks.remove(att)
            if disk is not None:
                if inst.key in disk.users:
                    disk.users.remove(inst.key)
                if not att.pending:
                    disk.last_detach = time.time()

    def _instances_attach(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            inst = self._instance(project, zone, call.params["instance"])
            if inst.status == "STOPPING":
                raise errors.not_ready(f"projects/{project}/zones/{zone}/instances/{inst.name}")
            key = f"instance:{project}/{zone}/{inst.name}"
            ref = (
                parse_zonal(
                    str(call.body.get("source", "")),
                    "disks",
                    project=project,
                    zone=zone,
                    field_name="resource.source",
                )
                if call.body.get("source")
                else None
            )
            disk_key = f"disk:{ref.project}/{ref.zone}/{ref.name}" if ref else key
            self._admit((key, disk_key))
            att = self._reserve_attachment(inst, call.body)

            def abort(failure: OperationFailure) -> None:
                self._unplug(inst, att)

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.instance(project, zone, inst.name),
                target_id=inst.id,
                resources=(key, disk_key),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=lambda: self._plug(inst, att),
                abort=abort,
            )

    def _instances_detach(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        device_name = call.query.get("deviceName")
        if not device_name:
            raise errors.required("deviceName")
        with self._lock:
            zone = self._known_zone(call)
            inst = self._instance(project, zone, call.params["instance"])
            att = inst.attachment(device_name, include_pending=True)
            if att is None or att.detaching:
                raise errors.invalid_field(
                    "deviceName", device_name, f"No attached disk found with device name '{device_name}'."
                )
            key = f"instance:{project}/{zone}/{inst.name}"
            disk_key = f"disk:{att.disk[0]}/{att.disk[1]}/{att.disk[2]}"
            self._admit((key, disk_key))
            att.detaching = True

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    att.detaching = False

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.instance(project, zone, inst.name),
                target_id=inst.id,
                resources=(key, disk_key),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=lambda: self._unplug(inst, att),
                abort=abort,
            )

    def _instances_set_auto_delete(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        device_name = call.query.get("deviceName")
        if not device_name:
            raise errors.required("deviceName")
        raw = call.query.get("autoDelete")
        if raw not in ("true", "false", "True", "False"):
            raise errors.required("autoDelete")
        auto_delete = raw.lower() == "true"
        with self._lock:
            zone = self._known_zone(call)
            inst = self._instance(project, zone, call.params["instance"])
            att = inst.attachment(device_name, include_pending=True)
            if att is None:
                raise errors.invalid_field(
                    "deviceName", device_name, f"No attached disk found with device name '{device_name}'."
                )
            key = f"instance:{project}/{zone}/{inst.name}"
            self._admit((key,))

            def effect() -> None:
                with self._lock:
                    att.auto_delete = auto_delete

            return self._start_operation(
                call,
                project=project,
                zone=zone,
                target_link=self.links.instance(project, zone, inst.name),
                target_id=inst.id,
                resources=(key,),
                latency_s=self._profile.sample(call.method, self._rng),
                effect=effect,
            )

    def _instances_set_labels(self, call: Call) -> dict[str, Any]:
        project = call.params["project"]
        with self._lock:
            zone = self._known_zone(call)
            inst = self._instance(project, zone, call.params["instance"])
            return self._set_labels(
                call,
                inst,
                project=project,
                zone=zone,
                key=f"instance:{project}/{zone}/{inst.name}",
                target_link=self.links.instance(project, zone, inst.name),
            )

    # ------------------------------------------------------------------ admin (no quota, no latency)

    def register_image(
        self,
        *,
        project: str,
        name: str,
        file: Path | None,
        family: str | None = None,
        labels: Mapping[str, str] | None = None,
        disk_size_gb: int | None = None,
        description: str = "",
        deprecated: str | None = None,
    ) -> dict[str, Any]:
        """An image that is READY at once, from a local raw filesystem file (or an archive)."""
        _valid_name(name)
        image_labels = labelmod.validate(labels)
        with self._lock:
            if (project, name) in self._images:
                raise errors.already_exists(f"projects/{project}/global/images/{name}")
            image = Image(
                project=project,
                name=name,
                id=self._new_id(),
                created=time.time(),
                seq=next(self._seq),
                family=family,
                description=description,
                labels=image_labels,
                deprecated={"state": deprecated} if deprecated else None,
            )
            self._images[image.key] = image
        try:
            size = 0
            if file is not None:
                if not file.is_file():
                    raise errors.invalid_field("file", file, "The file does not exist.")
                size = file.stat().st_size
                if self._config.block_devices:
                    image.file = self.state_dir / "images" / project / f"{name}-{image.id}.raw"
                    size = blockdev.materialize_image(file, image.file)
            elif disk_size_gb is None or self._config.block_devices:
                raise errors.invalid("an image needs a file (or disk_size_gb when block devices are off)")
        except Exception:
            with self._lock:
                self._images.pop(image.key, None)
            raise
        with self._lock:
            image.archive_size_bytes = file.stat().st_size if file is not None else 0
            image.disk_size_gb = max(disk_size_gb or 0, _gib_ceil(size))
            image.status = "READY"
            return image.to_json(self.links)

    def create_instance(
        self,
        *,
        project: str,
        zone: str,
        name: str,
        machine_type: str = "n1-standard-4",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """An instance that is RUNNING at once (one per kwok node in tests)."""
        _valid_name(name)
        inst_labels = labelmod.validate(labels)
        with self._lock:
            if zone not in self._config.zones:
                raise errors.invalid_field("zone", zone, "Unknown zone.")
            inst = self._new_instance(project, zone, name, machine_type, inst_labels)
            inst.status = "RUNNING"
            return self._instance_json(inst)

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            config = self._config.updated(changes)
            self._profile = profile(config.latency).with_overrides(config.latency_overrides)
            if "seed" in changes:
                self._rng = random.Random(config.seed)
            if {"write_quota_per_s", "write_quota_burst"} & set(changes):
                self._write_quota.configure(config.write_quota_per_s, config.write_quota_burst)
            if "read_quota_per_s" in changes:
                self._read_quota.configure(config.read_quota_per_s)
            self._config = config
            return config.runtime_view()

    @property
    def config(self) -> SimConfig:
        with self._lock:
            return self._config

    def add_faults(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._faults.extend(rules)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._faults]

    def inventory(self) -> dict[str, Any]:
        with self._lock:
            disks = []
            for disk in sorted(self._disks.values(), key=lambda d: d.key):
                entry = disk.to_json(self.links)
                entry["_sim"] = {"file": str(disk.file) if disk.file else None}
                disks.append(entry)
            instances = []
            for inst in sorted(self._instances.values(), key=lambda i: i.key):
                entry = self._instance_json(inst)
                entry["_sim"] = {
                    "devRoot": str(inst.dev_root),
                    "attachments": [
                        {
                            "deviceName": a.device_name,
                            "disk": self.links.disk(*a.disk),
                            "mode": a.mode,
                            "pending": a.pending,
                            "loop": a.loop,
                            "byId": str(blockdev.by_id_dir(inst.dev_root) / f"google-{a.device_name}"),
                        }
                        for a in inst.disks
                    ],
                }
                instances.append(entry)
            images = []
            for image in sorted(self._images.values(), key=lambda i: i.seq):
                entry = image.to_json(self.links)
                entry["_sim"] = {"file": str(image.file) if image.file else None}
                images.append(entry)
            return {
                "images": images,
                "disks": disks,
                "instances": instances,
                "loopDevices": sorted(
                    a.loop for i in self._instances.values() for a in i.disks if a.loop is not None
                ),
                "warmImageZones": sorted(f"{p}/{n}@{z}" for (p, n), z in self._warm),
                "pendingOperations": dict(self._pending),
            }

    def operation_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            out = []
            for index, op in enumerate(self._op_log[since:], start=since):
                entry = op.to_json(self.links, now)
                entry["_sim"] = {
                    "index": index,
                    "method": op.method,
                    "requestId": op.request_id,
                    "latencyS": round(op.latency_s, 6),
                    "startedAtS": round(op.started_mono - self._t0, 6) if op.started_mono else None,
                    # What the simulator itself added to this operation: the insert call's own latency,
                    # the PENDING pause and the RUNNING time (a benchmark's cloud floor). Time spent queued
                    # behind other operations on the same resource is not in it; the wall-clock moments
                    # (epoch seconds) show it.
                    "injectedS": round(
                        self._profile.call_write_s + self._profile.pending_s + op.latency_s, 6
                    ),
                    "insertedAt": op.inserted,
                    "runningAt": op.started,
                    "endedAt": op.ended,
                }
                out.append(entry)
            return out

    def request_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_json() for e in self._requests if e.seq > since]

    def close(self) -> None:
        """Stop all operations and release every loop device, link and file. Idempotent."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self._scheduler.stop()
        with self._lock:
            instances = list(self._instances.values())
            disks = list(self._disks.values())
            images = list(self._images.values())
        for inst in instances:
            for att in list(inst.disks):
                try:
                    self._unplug(inst, att)
                except Exception:
                    log.exception("computesim: releasing %s on %s", att.device_name, inst.name)
            _prune_dev_root(inst.dev_root, self.dev_base)
        # Anything a crash in the middle of an attach left behind is still findable by its file.
        blockdev.sweep(self.state_dir)
        for disk in disks:
            if disk.file is not None:
                blockdev.remove_file(disk.file)
        for image in images:
            if image.file is not None:
                blockdev.remove_file(image.file)


def _prune_dev_root(dev_root: Path, dev_base: Path) -> None:
    """Remove the by-id directory chain up to the instance's directory, if we left it empty."""
    by_id = blockdev.by_id_dir(dev_root)
    for directory in (by_id, by_id.parent, dev_root, dev_root.parent):
        if directory == dev_base or dev_base not in directory.parents:
            break
        try:
            directory.rmdir()
        except OSError:
            break


def _valid_name(value: object, field_name: str = "resource.name") -> str:
    if not value:
        raise errors.required(field_name)
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise errors.invalid_field(field_name, value, _NAME_RULE)
    return value


def _gib_ceil(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / GIB))


def _filter(call: Call) -> filters.Expr:
    try:
        return filters.parse(call.query.get("filter"))
    except filters.FilterError as exc:
        raise errors.invalid_field(
            "filter", call.query.get("filter"), f"Invalid list filter expression: {exc}"
        ) from None


def _page(call: Call, kind: str, list_id: str, items: list[dict[str, Any]], links: Links) -> dict[str, Any]:
    """Filter, order and paginate a list answer like compute's ``list`` methods."""
    expr = _filter(call)
    try:
        selected = [i for i in items if expr.matches(i)]
    except filters.FilterError as exc:
        raise errors.invalid_field("filter", call.query.get("filter"), str(exc)) from None
    order = (call.query.get("orderBy") or "name").split()
    if order[0] not in ("name", "creationTimestamp"):
        raise errors.invalid_field(
            "orderBy", call.query.get("orderBy"), "Supported: name, creationTimestamp [desc]."
        )
    selected.sort(key=lambda i: str(i.get(order[0], "")), reverse=order[1:] == ["desc"])
    try:
        max_results = int(call.query.get("maxResults") or MAX_RESULTS)
        offset = int(call.query.get("pageToken") or 0)
    except ValueError:
        raise errors.invalid("Invalid maxResults or pageToken.") from None
    if not 0 <= max_results <= MAX_RESULTS:
        raise errors.invalid_field("maxResults", max_results, f"Must be between 0 and {MAX_RESULTS}.")
    max_results = max_results or MAX_RESULTS
    page = selected[offset : offset + max_results]
    out: dict[str, Any] = {"kind": kind, "id": list_id, "selfLink": f"{links.base}{list_id}"}
    if page:
        out["items"] = page
    if offset + max_results < len(selected):
        out["nextPageToken"] = str(offset + max_results)
    return out
