"""``CloudProvider`` over google-cloud-compute: disks from images, attach, detach, delete, labels.

Owns the compute clients, credentials (Application Default Credentials / Workload Identity in
production; anonymous credentials and an endpoint override for the compute API simulator), the
write pacing and per-resource serialisation (``ratelimit``), and the check -> act -> wait -> verify
sequence of every mutation. Request ids are derived from an idempotency key that the caller makes
unique per intent (the RuntimeDisk's uid), so a retried or replayed call is recognised by GCE.
The compute client is synchronous; calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import google.api_core.exceptions as gexc
import google.auth
import google.auth.exceptions
import requests
import requests.adapters
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from sdworker import image_meta
from sdworker.api.types import ResolvedImage
from sdworker.cloud.errors import CloudError, Retry, classify_http, classify_operation
from sdworker.cloud.provider import CLOUD_THREADS, AttachRequest, Disk, DiskRequest, image_matches
from sdworker.cloud.ratelimit import KeyedLocks, TokenBucket
from sdworker.workqueue import backoff

T = TypeVar("T")
_REQUEST_NS = uuid.UUID("6a1d5f0e-2f0b-4d0e-9a53-5d3c8a1f7b21")
_IMAGE_RE = re.compile(
    r"^projects/(?P<project>[^/]+)/global/images/(?:family/(?P<family>[^/]+)|(?P<image>[^/]+))$"
)
# Observer(method, outcome, seconds) -> None, for metrics.
Observer = Callable[[str, str, float], None]


def request_id(key: str, action: str, attempt: int = 0) -> str:
    """A deterministic UUID for one intended mutation (GCE de-duplicates by it).

    GCE answers a repeated id with the original operation for an hour, *including a failed one*, so
    the attempt number moves on when an operation has failed; a lost answer (5xx, timeout) keeps
    the id, so the retry is recognised as the same request and nothing is done twice.
    """
    return str(uuid.uuid5(_REQUEST_NS, f"{key}/{action}/{attempt}"))


def _reasons(exc: gexc.GoogleAPICallError) -> list[str]:
    out = []
    for err in exc.errors or []:
        reason = err.get("reason") if isinstance(err, Mapping) else getattr(err, "reason", None)
        if reason:
            out.append(str(reason))
    return out


async def _unless_absent(work: Awaitable[T]) -> T | None:
    """Already gone is an answer, not an error: a 404 becomes ``None``."""
    try:
        return await work
    except CloudError as err:
        if err.status == 404:
            return None
        raise


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


# Disk types that can be attached READ_ONLY to many instances ("Share disks between VMs"): Persistent Disk
# as it is, Hyperdisk ML only with access mode READ_ONLY_MANY (a Hyperdisk created without one is
# READ_WRITE_SINGLE: GCE refuses its second attach). Other Hyperdisk types cannot be read-only at all.
_READ_ONLY_MANY_HYPERDISKS = frozenset({"hyperdisk-ml"})


def access_mode(disk_type: str, *, read_only_many: bool) -> str | None:
    """The ``Disk.accessMode`` to create a disk with: None for Persistent Disk (it has none) and for a
    Hyperdisk used by one instance (GCE's default, READ_WRITE_SINGLE); READ_ONLY_MANY for a shared one."""
    if not read_only_many or not disk_type.startswith("hyperdisk-"):
        return None
    if disk_type not in _READ_ONLY_MANY_HYPERDISKS:
        raise CloudError(
            "DiskTypeNotShareable",
            Retry.NEVER,
            f"{disk_type} cannot be attached read-only to several VMs; use hyperdisk-ml or a pd-* type",
        )
    return "READ_ONLY_MANY"


async def adc_project() -> str | None:
    """The project of the Application Default Credentials (Workload Identity: the cluster's project);
    None where ADC names none or there are no credentials to ask."""
    try:
        _, project = await asyncio.to_thread(google.auth.default)
    except google.auth.exceptions.DefaultCredentialsError:
        return None
    return str(project) if project else None


@dataclass(frozen=True)
class Mutation:
    """One zone mutation on behalf of one caller's idempotency key: its request ids and retries are keyed
    by (key, action), so a replayed call is recognised and a retried one is new."""

    key: str
    action: str
    project: str
    zone: str


class GceCloud:
    def __init__(
        self,
        *,
        api_endpoint: str | None = None,
        anonymous: bool = False,
        write_rate: float = 20.0,
        write_burst: int = 5,
        operation_timeout: float = 600.0,
        observer: Observer | None = None,
        threads: int = CLOUD_THREADS,
    ) -> None:
        options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
        # None: Application Default Credentials (Workload Identity on GKE).
        credentials = AnonymousCredentials() if anonymous else None  # type: ignore[no-untyped-call]
        kw: dict[str, Any] = {"credentials": credentials, "client_options": options}
        self._disks = compute_v1.DisksClient(**kw)
        self._instances = compute_v1.InstancesClient(**kw)
        self._images = compute_v1.ImagesClient(**kw)
        self._zone_ops = compute_v1.ZoneOperationsClient(**kw)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gce")
        for client in (self._disks, self._instances, self._images, self._zone_ops):
            _pool_connections(client, threads)
        self.writes = TokenBucket(write_rate, write_burst)
        self.locks = KeyedLocks()
        self.operation_timeout = operation_timeout
        self._observer = observer
        self._attempts: dict[str, int] = {}

    def _rid(self, at: Mutation) -> str:
        return request_id(at.key, at.action, self._attempts.get(f"{at.key}/{at.action}", 0))

    def _next_attempt(self, at: Mutation) -> None:
        """The next try of ``at`` is a new request, not a replay of the last one."""
        ident = f"{at.key}/{at.action}"
        self._attempts[ident] = self._attempts.get(ident, 0) + 1

    async def _mutate(
        self,
        at: Mutation,
        method: str,
        fn: Callable[..., Any],
        request_type: Callable[..., Any],
        **fields: Any,
    ) -> None:
        """Issue a zone mutation (``request_type(project=, zone=, request_id=, **fields)``) with this
        attempt's request id and wait for it; a failed operation moves the attempt on, so the caller's retry
        is a new request rather than a replay of the failure."""
        request = request_type(project=at.project, zone=at.zone, request_id=self._rid(at), **fields)
        op = await self._call(method, fn, write=True, request=request)
        try:
            await self._wait(at.project, at.zone, op)
        except CloudError:
            self._next_attempt(at)
            raise

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for client in (self._disks, self._instances, self._images, self._zone_ops):
            client.transport.close()  # type: ignore[no-untyped-call]

    async def _in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking client call on the cloud's own threads (``CLOUD_THREADS``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # --- plumbing ------------------------------------------------------------------------------

    async def _call(self, method: str, fn: Callable[..., T], *, write: bool = False, **kwargs: Any) -> T:
        if write:
            await self.writes.acquire()
        started = time.monotonic()
        outcome = "ok"
        try:
            return await self._in_thread(fn, retry=None, timeout=60.0, **kwargs)
        except gexc.GoogleAPICallError as exc:
            error = classify_http(int(exc.code or 0), _reasons(exc), exc.message or str(exc))
            outcome = error.reason
            raise error from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            outcome = "CloudUnavailable"
            raise CloudError("CloudUnavailable", Retry.SOON, str(exc)) from exc
        finally:
            if self._observer is not None:
                self._observer(method, outcome, time.monotonic() - started)

    async def _wait(self, project: str, zone: str, op: compute_v1.Operation) -> None:
        """Wait for a zone operation to be DONE and raise its error, if any."""
        deadline = time.monotonic() + self.operation_timeout
        while op.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise CloudError("OperationTimeout", Retry.SOON, f"operation {op.name} not done in time")
            op = await self._call(
                "zoneOperations.wait", self._zone_ops.wait, project=project, zone=zone, operation=op.name
            )
        if op.error and op.error.errors:
            first = op.error.errors[0]
            raise classify_operation(first.code, first.message)

    # --- images --------------------------------------------------------------------------------

    async def resolve_image(self, image: str) -> ResolvedImage:
        match = _IMAGE_RE.match(image)
        if match is None:
            raise CloudError(
                "InvalidImage", Retry.NEVER, f"{image!r} is not projects/P/global/images/[family/]NAME"
            )
        project = match["project"]
        if match["family"]:
            found = await self._call(
                "images.getFromFamily", self._images.get_from_family, project=project, family=match["family"]
            )
        else:
            found = await self._call("images.get", self._images.get, project=project, image=match["image"])
        concrete = f"projects/{project}/global/images/{found.name}"
        try:
            digest = image_meta.read_digest(found.description or "", dict(found.labels))
        except image_meta.ImageMetaError as exc:
            # Not made by `sdworker image publish` (or changed since): no digest to verify disks against.
            raise CloudError("ImageMetadataInvalid", Retry.NEVER, f"image {concrete}: {exc}") from exc
        return ResolvedImage(image=concrete, digest=digest)

    # --- disks ---------------------------------------------------------------------------------

    def _disk(self, project: str, zone: str, raw: compute_v1.Disk) -> Disk:
        return Disk(
            project=project,
            zone=zone,
            name=raw.name,
            status=raw.status,
            source_image=raw.source_image,
            size_gb=int(raw.size_gb),
            labels=dict(raw.labels),
            label_fingerprint=raw.label_fingerprint,
            users=tuple(_last(u) for u in raw.users),
        )

    async def get_disk(self, project: str, zone: str, name: str) -> Disk | None:
        raw = await _unless_absent(
            self._call("disks.get", self._disks.get, project=project, zone=zone, disk=name)
        )
        return None if raw is None else self._disk(project, zone, raw)

    async def ensure_disk(self, request: DiskRequest, *, idempotency_key: str) -> Disk:
        p, z = request.project, request.zone
        async with self.locks.hold([f"disk/{p}/{z}/{request.name}"]):
            disk = await self.get_disk(p, z, request.name)
            if disk is None:
                disk = await self._create(request, idempotency_key)
            elif disk.status != "READY":
                disk = await self._wait_disk_ready(p, z, request.name)
        if not image_matches(disk.source_image, request.source_image):
            raise CloudError(
                "DiskConflict",
                Retry.NEVER,
                f"disk {request.name} exists from {disk.source_image}, expected {request.source_image}",
            )
        return disk

    async def _create(self, request: DiskRequest, idempotency_key: str) -> Disk:
        p, z = request.project, request.zone
        resource = compute_v1.Disk(
            name=request.name,
            source_image=request.source_image,
            size_gb=request.size_gb,
            type_=f"projects/{p}/zones/{z}/diskTypes/{request.disk_type}",
            labels=dict(request.labels),
        )
        if (mode := access_mode(request.disk_type, read_only_many=request.read_only_many)) is not None:
            resource.access_mode = mode
        at = Mutation(idempotency_key, f"insert/{request.name}", p, z)
        for last_try in (False, True):
            try:
                await self._mutate(
                    at,
                    "disks.insert",
                    self._disks.insert_unary,
                    compute_v1.InsertDiskRequest,
                    disk_resource=resource,
                )
            except CloudError as err:
                if err.status != 409:  # 409: someone (our earlier self) created it: verify below
                    raise
            try:
                return await self._wait_disk_ready(p, z, request.name)
            except CloudError as err:
                if err.reason != "DiskVanished" or last_try:
                    raise
                # GCE remembers a request id for an hour, also after its disk was deleted: a disk name
                # used again (a zone's shared disk after a sweep, a pool index) got the old, DONE insert
                # back and nothing was created. Once more, as a new request.
                self._next_attempt(at)
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    async def _wait_disk_ready(self, project: str, zone: str, name: str) -> Disk:
        deadline = time.monotonic() + self.operation_timeout
        polls = 0
        while True:
            disk = await self.get_disk(project, zone, name)
            if disk is None:
                raise CloudError("DiskVanished", Retry.SOON, f"disk {name} disappeared while being created")
            if disk.status == "READY":
                return disk
            if disk.status == "FAILED" or time.monotonic() > deadline:
                raise CloudError("DiskNotReady", Retry.SOON, f"disk {name} is {disk.status}")
            polls += 1
            await asyncio.sleep(backoff(polls, base=0.2, cap=5.0))

    async def ensure_deleted(self, project: str, zone: str, name: str, *, idempotency_key: str) -> None:
        async with self.locks.hold([f"disk/{project}/{zone}/{name}"]):
            disk = await self.get_disk(project, zone, name)
            if disk is None:
                return
            if disk.users:
                raise CloudError(
                    "ResourceInUse", Retry.SOON, f"disk {name} is attached to {', '.join(disk.users)}"
                )
            at = Mutation(idempotency_key, f"delete/{name}", project, zone)
            for _ in range(2):
                await _unless_absent(
                    self._mutate(
                        at,
                        "disks.delete",
                        self._disks.delete_unary,
                        compute_v1.DeleteDiskRequest,
                        disk=name,
                    )
                )
                if await self.get_disk(project, zone, name) is None:
                    return
                # The answer was the replay of an earlier delete (of an earlier disk of this name, within
                # GCE's hour of request-id memory): this disk is untouched. Once more, as a new request.
                self._next_attempt(at)
            raise CloudError("DiskNotDeleted", Retry.SOON, f"disk {name} still exists after its delete")

    async def list_disks(self, project: str, zone: str, labels: Mapping[str, str]) -> list[Disk]:
        expr = " AND ".join(f'labels.{k} = "{v}"' for k, v in sorted(labels.items()))
        pager = await self._call(
            "disks.list",
            self._disks.list,
            request=compute_v1.ListDisksRequest(project=project, zone=zone, filter=expr),
        )
        pages: list[compute_v1.Disk] = await self._in_thread(list, pager)
        return [self._disk(project, zone, raw) for raw in pages]

    async def list_disks_everywhere(self, project: str, labels: Mapping[str, str]) -> list[Disk]:
        """Disks with ``labels`` in every zone of ``project`` (one ``disks.aggregatedList``), so a disk in
        a zone no node of ours has been seen in is found too."""
        expr = " AND ".join(f'labels.{k} = "{v}"' for k, v in sorted(labels.items()))
        pager = await self._call(
            "disks.aggregatedList",
            self._disks.aggregated_list,
            request=compute_v1.AggregatedListDisksRequest(project=project, filter=expr),
        )
        scoped: list[tuple[str, compute_v1.DisksScopedList]] = await self._in_thread(list, pager)
        return [
            self._disk(project, _last(raw.zone), raw)
            for scope, found in scoped
            if scope.startswith("zones/")
            for raw in found.disks
        ]

    async def set_labels(
        self, project: str, zone: str, name: str, labels: Mapping[str, str], fingerprint: str
    ) -> None:
        async with self.locks.hold([f"disk/{project}/{zone}/{name}"]):
            op = await self._call(
                "disks.setLabels",
                self._disks.set_labels_unary,
                write=True,
                request=compute_v1.SetLabelsDiskRequest(
                    project=project,
                    zone=zone,
                    resource=name,
                    zone_set_labels_request_resource=compute_v1.ZoneSetLabelsRequest(
                        labels=dict(labels), label_fingerprint=fingerprint
                    ),
                ),
            )
            await self._wait(project, zone, op)

    # --- instances -----------------------------------------------------------------------------

    async def _instance(self, project: str, zone: str, instance: str) -> compute_v1.Instance | None:
        return await _unless_absent(
            self._call("instances.get", self._instances.get, project=project, zone=zone, instance=instance)
        )

    async def instance_exists(self, project: str, zone: str, instance: str) -> bool:
        return await self._instance(project, zone, instance) is not None

    async def ensure_attached(self, request: AttachRequest, *, idempotency_key: str) -> None:
        project, zone, instance, disk = request.project, request.zone, request.instance, request.disk
        device_name, read_only = request.device_name, request.read_only
        keys = [f"instance/{project}/{zone}/{instance}"]
        if not read_only:
            # One writer per disk: two read-write attaches must not race. Read-only attaches of a shared
            # disk need no such guard (GCE attaches it to many VMs at once); holding the disk's lock made
            # every node of a zone wait for the previous node's whole attach (bench/bench_scaleout.py).
            keys.append(f"disk/{project}/{zone}/{disk}")
        async with self.locks.hold(keys):
            found = await self._instance(project, zone, instance)
            if found is None:
                raise CloudError("InstanceNotFound", Retry.NEVER, f"instance {instance} not found in {zone}")
            for attached in found.disks:
                if attached.device_name == device_name:
                    if _last(attached.source) == disk:
                        return  # already done
                    raise CloudError(
                        "DeviceNameInUse",
                        Retry.NEVER,
                        f"device {device_name} on {instance} is {_last(attached.source)}, not {disk}",
                    )
            mode = "READ_ONLY" if read_only else "READ_WRITE"
            at = Mutation(idempotency_key, f"attach/{instance}/{disk}", project, zone)
            await self._mutate(
                at,
                "instances.attachDisk",
                self._instances.attach_disk_unary,
                compute_v1.AttachDiskInstanceRequest,
                instance=instance,
                attached_disk_resource=compute_v1.AttachedDisk(
                    source=f"projects/{project}/zones/{zone}/disks/{disk}",
                    device_name=device_name,
                    mode=mode,
                    auto_delete=request.auto_delete,
                ),
            )
            found = await self._instance(project, zone, instance)
            if found is None or not any(a.device_name == device_name for a in found.disks):
                raise CloudError(
                    "AttachNotVisible", Retry.SOON, f"{disk} not attached to {instance} after the operation"
                )

    async def ensure_detached(
        self, project: str, zone: str, instance: str, device_name: str, *, idempotency_key: str
    ) -> None:
        async with self.locks.hold([f"instance/{project}/{zone}/{instance}"]):
            found = await self._instance(project, zone, instance)
            if found is None or not any(a.device_name == device_name for a in found.disks):
                return
            at = Mutation(idempotency_key, f"detach/{instance}/{device_name}", project, zone)
            await _unless_absent(
                self._mutate(
                    at,
                    "instances.detachDisk",
                    self._instances.detach_disk_unary,
                    compute_v1.DetachDiskInstanceRequest,
                    instance=instance,
                    device_name=device_name,
                )
            )


def _pool_connections(client: Any, size: int) -> None:
    """Let the client's HTTP session keep ``size`` connections per host, one per thread: requests' default
    is 10, and every call past the 10th in flight opened a connection and dropped it after (urllib3 logs
    "Connection pool is full, discarding connection"). The REST transport keeps its session in
    ``_session`` (google-cloud-compute's ``transports/rest.py``); a transport without one is left as is."""
    session = getattr(client.transport, "_session", None)
    if isinstance(session, requests.Session):
        adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
        for prefix in ("https://", "http://"):
            session.mount(prefix, adapter)
