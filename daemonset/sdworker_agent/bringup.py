"""The bring-up of one runtime disk: from ``Attached`` to ``Ready``, or to ``Failed`` with the reason.

Claim (``Mounting``), find the device by id, check the filesystem, mount it read-only (or adopt the mount
a previous agent made), verify the manifest, prefetch, report ``Ready`` with timings. Each step writes
the RuntimeDisk's status through a read-modify-write that refuses to go on once the disk left
``Mounting`` (the operator started a teardown, another agent process took over), so a stale bring-up
never overwrites a newer phase. Host work runs in threads (``sdworker_agent.system``,
``sdworker_content.verify``, ``sdworker_agent.prefetch``) so the loop keeps serving probes and watch events
meanwhile. The loop (``sdworker_agent.agent``) decides when to start one, stop one and retry one.

Failures come in three kinds: a step that retrying will not fix (``BringUpError``, or a host error) marks
the RuntimeDisk ``Failed`` and takes the mount away so pods cannot use an unverified runtime; a stop
request (``Aborted``, ``kubeio.Stop``) ends the bring-up quietly; anything else (the API server hiccuped)
propagates to the loop, which retries with back-off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final

from sdworker.api import conditions, transitions
from sdworker.api.parse import parse_runtimedisk
from sdworker.api.types import ConditionStatus, Phase, PrefetchStats, RuntimeDisk, RuntimeDiskStatus
from sdworker.kube.client import Json
from sdworker_agent import mountinfo, plan, prefetch, system
from sdworker_agent.config import Config
from sdworker_agent.kubeio import AgentKube, NotFoundError, Stop, involved
from sdworker_agent.metrics import Metrics
from sdworker_content.index import INDEX_PATH
from sdworker_content.verify import VerifyResult, verify

log = logging.getLogger("sdworker_agent")

CONDITION_READY: Final = "Ready"


class BringUpError(Exception):
    """A step failed for a reason that retrying will not fix: the RuntimeDisk becomes Failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Aborted(Exception):  # noqa: N818 - a control signal, not an error report
    """The bring-up was asked to stop (its RuntimeDisk is being deleted)."""


@dataclass(frozen=True)
class BringUp:
    """Brings this node's runtime disks up, one ``run`` per disk, and marks them ``Failed``."""

    kube: AgentKube
    config: Config
    metrics: Metrics
    now: Callable[[], datetime]
    # Hands every object a write returns to the loop's view (a write's response may beat the watch).
    remember: Callable[[Json], None]
    # A RuntimeDisk reduced to what ``plan`` decides on.
    view: Callable[[Json], plan.DiskView | None]
    # The newest version of a RuntimeDisk the loop has seen (what ``remember`` kept), if any: status writes
    # start from it instead of a read.
    latest: Callable[[str], Json | None]

    async def _write(self, name: str, mutate: Callable[[Json, RuntimeDiskStatus], RuntimeDiskStatus]) -> Json:
        return await self.kube.update_status(name, mutate, known=self.latest(name))

    async def run(self, name: str, stop: threading.Event) -> None:
        """Bring ``name`` up; ``stop`` set by the loop ends it at the next step (``Aborted``)."""
        cfg = self.config
        mounts = await asyncio.to_thread(system.read_mountinfo, cfg.mountinfo_path)

        def claim(obj: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            if obj["metadata"].get("deletionTimestamp"):
                raise Stop("it is being deleted")
            if status.phase not in (Phase.ATTACHED, Phase.MOUNTING, Phase.READY):
                raise Stop(f"its phase is {status.phase}")
            if status.phase is Phase.READY:
                view = self.view(obj)
                if view is not None and plan.mount_state(view, mounts) is plan.MountState.OURS:
                    raise Stop("it is already Ready and mounted")
            spec = obj["spec"]
            message = (
                f"Waiting for device google-{spec.get('deviceName')} to mount at {spec.get('mountPath')}"
            )
            return with_phase(status, Phase.MOUNTING, "Mounting", message, self.now())

        obj = await self._write(name, claim)
        started = time.monotonic()
        self.remember(obj)
        rd = parse_runtimedisk(obj)
        target, problem = plan.target_path(cfg.host_root, rd.spec.mount_path, cfg.mount_root)
        try:
            if problem:
                raise BringUpError("InvalidMountPath", problem)
            await self._steps(rd, target, stop, started)
        except BringUpError as failure:
            await self._after_failure(rd, target, failure)
        except system.HostError as failure:
            if failure.reason == "Aborted":
                raise Aborted(failure.message) from None
            await self._after_failure(rd, target, BringUpError(failure.reason, failure.message))

    async def fail(self, name: str, reason: str, message: str) -> None:
        """Mark ``name`` ``Failed`` with ``reason`` and a message that says expected vs found."""

        def failed(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            return with_phase(status, Phase.FAILED, reason, message, self.now())

        try:
            obj = await self._write(name, failed)
        except NotFoundError:
            return
        except Stop as why:  # the operator moved it on (a teardown): its phase is not ours to overwrite
            log.info("RuntimeDisk %s: not marked Failed (%s): %s: %s", name, why, reason, message)
            return
        self.remember(obj)
        self.metrics.failures.labels(reason=reason).inc()
        log.warning("RuntimeDisk %s: Failed: %s: %s", name, reason, message)
        await self.kube.event(
            involved(obj), warning=True, reason="RuntimeFailed", message=f"{reason}: {message}"
        )

    async def _steps(self, rd: RuntimeDisk, target: str, stop: threading.Event, started: float) -> None:
        cfg, m, spec = self.config, self.metrics, rd.spec

        def check_stop() -> None:
            if stop.is_set():
                raise Aborted("asked to stop")

        # 1. the device, by id
        device = await asyncio.to_thread(
            system.wait_for_device,
            cfg.dev_root,
            spec.device_name,
            timeout=cfg.device_timeout,
            should_stop=stop.is_set,
        )
        m.device_wait_seconds.observe(time.monotonic() - started)
        check_stop()

        # 2. the filesystem, mounted once
        t0 = time.monotonic()
        mounted_now, fsck_seconds = await asyncio.to_thread(self._ensure_mounted, device, target)
        mount_seconds = time.monotonic() - t0
        if mounted_now:
            m.fsck_seconds.observe(fsck_seconds)
            m.mount_seconds.observe(mount_seconds)
        log.info(
            "RuntimeDisk %s: %s %s at %s",
            rd.name,
            "mounted" if mounted_now else "found already mounted",
            device.path,
            target,
        )

        def mounted(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            _still_mounting(status)
            timings = status.timings
            if mounted_now:
                durations = {
                    **timings.durations_seconds,
                    "fsck": round(fsck_seconds, 3),
                    "mount": round(mount_seconds, 3),
                }
                timings = replace(timings, mounted=self.now(), durations_seconds=durations)
            elif timings.mounted is None:  # a previous agent mounted it and died before saying so
                timings = replace(timings, mounted=self.now())
            return replace(
                status,
                device_path=device.path,
                message=f"Mounted {device.path} read-only at {spec.mount_path}; verifying the manifest",
                timings=timings,
            )

        self.remember(await self._write(rd.name, mounted))
        check_stop()

        # 3. the manifest digest
        if not spec.image_digest:
            raise BringUpError(
                "DigestUnknown",
                "expected spec.imageDigest to name the runtime's manifest digest, found it empty: "
                "the runtime cannot be verified",
            )
        t0 = time.monotonic()
        result = await asyncio.to_thread(verify, Path(target), spec.image_digest, cfg.verify_mode)
        verify_seconds = time.monotonic() - t0
        m.verify_seconds.observe(verify_seconds)
        if not result.ok:
            raise verify_failure(result, device.path)
        check_stop()

        def verified(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            _still_mounting(status)
            durations = {**status.timings.durations_seconds, "verify": round(verify_seconds, 3)}
            return replace(
                status,
                message=f"Verified {spec.image_digest} ({result.mode.value}); prefetching",
                timings=replace(status.timings, verified=self.now(), durations_seconds=durations),
            )

        self.remember(await self._write(rd.name, verified))

        # 4. the page cache
        try:
            fetched = await asyncio.to_thread(
                prefetch.prefetch,
                target,
                spec.prefetch,
                workers=cfg.prefetch_workers,
                should_stop=stop.is_set,
            )
        except prefetch.PrefetchAborted as exc:
            raise Aborted(str(exc)) from None
        stats = fetched.stats
        m.prefetch_seconds.observe(stats.seconds)
        m.prefetch_bytes.inc(stats.bytes)
        m.prefetch_throughput.labels(runtime=spec.runtime_id).set(stats.throughput_mbps)
        log.info(
            "RuntimeDisk %s: prefetched %d file(s), %d bytes in %.3fs (%.1f MB/s)%s",
            rd.name,
            len(fetched.files),
            stats.bytes,
            stats.seconds,
            stats.throughput_mbps,
            f"; skipped {', '.join(fetched.skipped)}" if fetched.skipped else "",
        )
        check_stop()

        message = (
            f"Mounted read-only at {spec.mount_path}, verified {spec.image_digest}, prefetched "
            f"{len(fetched.files)} file(s) ({stats.bytes} bytes at {stats.throughput_mbps:.1f} MB/s)"
        )
        if fetched.skipped:
            message += f"; prefetch skipped {', '.join(fetched.skipped)}"

        def ready(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            _still_mounting(status)
            durations = {**status.timings.durations_seconds, "prefetch": round(stats.seconds, 3)}
            new = with_phase(status, Phase.READY, "Ready", message, self.now())
            return replace(
                new,
                prefetch=PrefetchStats(
                    bytes=stats.bytes,
                    seconds=round(stats.seconds, 3),
                    throughput_mbps=round(stats.throughput_mbps, 1),
                ),
                timings=replace(status.timings, prefetched=self.now(), durations_seconds=durations),
            )

        obj = await self._write(rd.name, ready)
        self.remember(obj)
        log.info("RuntimeDisk %s: Ready", rd.name)
        await self.kube.event(involved(obj), warning=False, reason="RuntimeReady", message=message)
        if fetched.skipped:
            await self.kube.event(
                involved(obj),
                warning=True,
                reason="PrefetchSkipped",
                message=f"Not prefetched: {', '.join(fetched.skipped)}",
            )

    def _ensure_mounted(self, device: system.Device, target: str) -> tuple[bool, float]:
        """``(mounted_now, fsck_seconds)``; adopts a mount of this device, never mounts on top of one."""
        here = mountinfo.mounts_at(system.read_mountinfo(self.config.mountinfo_path), target)
        if len(here) == 1 and here[0].device == device.number:
            return False, 0.0
        for _ in here:  # someone else's mount, or stacked ones: take them all off first
            log.warning("unmounting %s: it holds another device than %s", target, device.path)
            system.unmount(target)
        t0 = time.monotonic()
        system.check_filesystem(device, full_check=self.config.full_fsck)
        fsck_seconds = time.monotonic() - t0
        system.mount_readonly(device, target)
        return True, fsck_seconds

    async def _after_failure(self, rd: RuntimeDisk, target: str, failure: BringUpError) -> None:
        # A runtime that failed verification must not stay where pods could find it through hostPath.
        if target:
            try:
                await asyncio.to_thread(system.unmount_all, self.config.mountinfo_path, target)
            except system.HostError as exc:
                log.warning("RuntimeDisk %s: could not unmount after failure: %s", rd.name, exc.message)
        await self.fail(rd.name, failure.reason, failure.message)


def _still_mounting(status: RuntimeDiskStatus) -> None:
    if status.phase is not Phase.MOUNTING:
        raise Stop(f"its phase changed to {status.phase} during the bring-up")


def with_phase(
    status: RuntimeDiskStatus, phase: Phase, reason: str, message: str, now: datetime
) -> RuntimeDiskStatus:
    """``status`` moved to ``phase`` with its Ready condition; ``Stop`` where the agent may not set it
    from the current phase (``api.transitions``: say, the operator began a teardown meanwhile)."""
    problem = transitions.allowed(transitions.Writer.AGENT, status.phase, phase)
    if problem is not None:
        raise Stop(problem)
    ready = ConditionStatus.TRUE if phase is Phase.READY else ConditionStatus.FALSE
    return replace(
        status,
        phase=phase,
        reason=reason,
        message=message,
        conditions=conditions.set_condition(
            status.conditions, type_=CONDITION_READY, status=ready, reason=reason, message=message, now=now
        ),
    )


def verify_failure(result: VerifyResult, device: str) -> BringUpError:
    where = f"/{INDEX_PATH} on {device}"
    if result.index_digest is not None and result.index_digest != result.expected_digest:
        return BringUpError(
            "DigestMismatch",
            f"expected manifest digest {result.expected_digest} (spec.imageDigest), "
            f"found {result.index_digest} in {where}",
        )
    if result.index_digest is None:
        return BringUpError(
            "ManifestInvalid",
            f"expected a runtime manifest digesting to {result.expected_digest}, found: {result.summary()}",
        )
    return BringUpError(
        "RuntimeMismatch",
        f"expected the runtime tree described by {result.expected_digest} ({result.mode.value} check), "
        f"found: {result.summary()}",
    )
