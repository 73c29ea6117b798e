"""The simulator's operation core: the call pipeline and the life of an operation, over ``state``.

Every API method is ``call(method, path, params, query, body)``: the HTTP layer only routes. A call
pays its synchronous latency, passes the regional quota, may draw an injected fault (5xx, IAM denial), is
checked for a replayed ``requestId``, and then its resource handler (``images``, ``disks``,
``instances``, ``zones``) validates it under the lock. A mutation that is accepted reserves what it needs
at once (a disk is CREATING, an attachment is pending), so concurrent requests see each other, and then
``_accept`` queues its operation; the effect itself (copying the image, ``losetup``) runs when the
operation finishes. Operations on the same resource run one after another, as GCE queues a VM's
operations, and at most ``pending_ops_per_resource`` may wait.

The handlers are mixins over ``Core`` (one class per resource); ``engine.Engine`` puts them together.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sdworker_tools.computesim import blockdev, errors, iam, listing
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.errors import ApiError, OperationFailure
from sdworker_tools.computesim.idempotency import InvalidRequestId, validate_request_id
from sdworker_tools.computesim.links import Links
from sdworker_tools.computesim.models import Disk, Image, Instance, Operation, Zonal, ZoneKey
from sdworker_tools.computesim.quota import region_of
from sdworker_tools.computesim.state import Call, LogEntry, State, Work

log = logging.getLogger(__name__)

Resource = Image | Disk | Instance
Z = TypeVar("Z", bound=Zonal)


@dataclass
class Method:
    handler: Callable[[Call], dict[str, Any]]
    write: bool
    counted: bool = True  # counts against the read quota (operation polling has its own meter)


class Core(State):
    def __init__(self, config: SimConfig, links: Links, state_dir: Path, dev_base: Path) -> None:
        super().__init__(config, links, state_dir, dev_base)
        self._methods: dict[str, Method] = self._method_table()

    def _method_table(self) -> dict[str, Method]:
        """API method name -> handler; the engine lists its resources' methods."""
        return {}

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
        entry = LogEntry(
            seq=0,
            t=started - self._t0,
            method=method,
            path=path,
            status=200,
            write=spec.write,
            query={k: v for k, v in query.items() if k not in ("$alt", "alt")},
            request_id=query.get("requestId") if spec.write else None,
        )
        try:
            return self._call(spec, Call(method, path, params, query, body or {}), entry)
        except ApiError as exc:
            entry.status, entry.reason = exc.code, exc.reason
            raise
        finally:
            with self._lock:
                entry.seq = next(self._request_seq)
                self._requests.append(entry)

    def _call(self, spec: Method, call: Call, entry: LogEntry) -> dict[str, Any]:
        scope = region_of(call.params["zone"]) if "zone" in call.params else "global"
        if spec.write and not self._write_quota.admit(scope):
            raise errors.rate_limited(scope, "write")
        if not spec.write and spec.counted and not self._read_quota.admit(scope):
            raise errors.rate_limited(scope, "read")
        http_fault = self._take_call_fault(call)
        if http_fault is not None:
            entry.fault = f"http {http_fault}"
            raise errors.backend_error(http_fault)
        with self._lock:
            denied = self._take_rule(call, "permission")
        if denied is not None:
            entry.fault = "permission"
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
                remembered = self._request_ids.get(call.project, call.request_id)
            if remembered is not None:
                entry.replayed = True
                entry.operation = remembered.value.name
                if remembered.signature != _signature(call):
                    log.warning(
                        "computesim: requestId %s reused for %s (first used for %s)",
                        call.request_id,
                        _signature(call),
                        remembered.signature,
                    )
                return remembered.value.to_json(self.links, time.monotonic())
            result = spec.handler(call)
            entry.operation = result.get("name")
        if self._take_lost_response(call):
            entry.fault = "lost_response"
            raise errors.backend_error(503)
        return result

    # ------------------------------------------------------------------ injected faults

    def _take_rule(self, call: Call, kind: str) -> FaultRule | None:
        for rule in self._faults:
            if rule.kind == kind and rule.matches(call.method, call.path):
                if rule.count > 0:
                    rule.count -= 1
                return rule
        return None

    def _take_call_fault(self, call: Call) -> int | None:
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

    def _accept(
        self,
        call: Call,
        target: Resource,
        *,
        effect: Callable[[], None],
        abort: Callable[[OperationFailure], None] | None = None,
        also: tuple[str, ...] = (),
        latency_s: float | None = None,
    ) -> dict[str, Any]:
        """Admit a mutation of ``target`` (and of the ``also`` queues), register its operation and queue
        it; the operation's JSON. Lock held. A handler that reserves state first calls ``_admit`` before
        reserving, so a full queue refuses the call before anything changed."""
        resources = (target.queue_key, *also)
        self._admit(resources)
        if latency_s is None:
            latency_s = self._profile.sample(call.method, self._rng)
        zone = target.zone
        op = Operation(
            project=target.project,
            zone=zone,
            name=self._op_name(),
            id=self._new_id(),
            method=call.method,
            target_link=target.link(self.links),
            target_id=target.id,
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
                target=op.target_link,
                zone=self.links.zone(op.project, zone or ""),
                region=region_of(zone) if zone else "global",
            )
        self._ops[(op.project, zone or "global", op.name)] = op
        self._op_log.append(op)
        self._work[op.name] = Work(effect, abort, injected)
        if call.request_id:
            self._request_ids.remember(op.project, call.request_id, _signature(call), op)
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

    def _zonal_list(
        self, call: Call, cls: type[Z], resources: Mapping[ZoneKey, Z], render: Callable[[Z], dict[str, Any]]
    ) -> dict[str, Any]:
        """``list`` of one zone, or ``aggregatedList`` (no zone in the path) of a zonal collection."""
        with self._lock:
            zone = self._known_zone(call)
            items = [
                render(r)
                for r in resources.values()
                if r.project == call.project and (not zone or r.zone == zone)
            ]
        kind, collection = f"compute#{cls.KIND}", f"{cls.KIND}s"
        if not zone:
            return listing.aggregated(
                call.query,
                project=call.project,
                zones=self._config.zones,
                links=self.links,
                field_name=collection,
                kind=f"{kind}AggregatedList",
                items=items,
            )
        return listing.page(
            call.query, f"{kind}List", f"projects/{call.project}/zones/{zone}/{collection}", items, self.links
        )

    def _set_labels(self, call: Call, resource: Resource) -> dict[str, Any]:
        """setLabels for any resource. Lock held. The fingerprint is compared and the labels set at
        acceptance, so two racing claims (a warm-pool disk, say) cannot both pass the check."""
        new_labels = labelmod.validate(call.body.get("labels"))
        self._admit((resource.queue_key,))
        labelmod.check_fingerprint(resource.labels, call.body.get("labelFingerprint"))
        resource.labels = new_labels
        return self._accept(call, resource, effect=lambda: None)


def _signature(call: Call) -> str:
    return f"{call.method} {call.path}"
