"""The node agent's control loop: observe, plan, act; and the bring-up of one runtime disk.

Owns the in-memory view of this node's RuntimeDisks (a server-side filtered list+watch), the reconcile
loop that turns each observation into actions through ``sdworker_agent.plan``, and the bring-up worker
that takes one RuntimeDisk from ``Attached`` to ``Ready``: claim (``Mounting``), find the device, check
the filesystem, mount read-only, verify the manifest, prefetch, report. Host work runs in threads
(``sdworker_agent.system``, ``sdworker.manifest``, ``sdworker_agent.prefetch``) so the loop keeps serving
probes and watch events meanwhile.

Why a plain watch loop and not kopf: kopf filters labels on the client, so every agent would stream every
RuntimeDisk in the cluster, and it writes progress annotations and finalizers of its own onto objects
the agent may only patch narrowly (see the admission policy). The agent needs one selector-filtered
watch, a level-triggered pass and nothing else.

Every pass starts from the mount table and fresh API reads, never from memory, so a restart (even a
SIGKILL between ``mount`` and the status write) resumes where the node actually is and never mounts
twice: the bring-up adopts a mount of the right device that is already there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sdworker import manifest
from sdworker.api import conditions
from sdworker.api import constants as c
from sdworker.api.parse import SpecError, parse_runtimedisk
from sdworker.api.types import ConditionStatus, Phase, PrefetchStats, RuntimeDisk, RuntimeDiskStatus
from sdworker.kube.client import Json, KubeError
from sdworker_agent import mountinfo, plan, prefetch, system
from sdworker_agent.kubeio import AgentKube, NotFoundError, Stop, WatchExpiredError, involved
from sdworker_agent.metrics import Metrics

log = logging.getLogger("sdworker_agent")

CONDITION_READY: Final = "Ready"
_MAX_BACKOFF: Final = 60.0
_UNMOUNT_LAYERS: Final = 16


@dataclass(frozen=True)
class Config:
    node_name: str
    dev_root: str = "/dev"
    host_root: str = "/host"
    mount_root: str = c.MOUNT_ROOT
    device_timeout: float = 120.0
    prefetch_workers: int = prefetch.DEFAULT_WORKERS
    verify_mode: manifest.VerifyMode = manifest.VerifyMode.STAT
    full_fsck: bool = False
    resync_seconds: float = 60.0
    watch_timeout_seconds: int = 300
    mountinfo_path: str = "/proc/self/mountinfo"

    @property
    def mount_dir(self) -> str:
        """The mount root as the agent sees it (under the host root)."""
        return os.path.join(os.path.normpath(self.host_root), os.path.normpath(self.mount_root).lstrip("/"))

    @property
    def selector(self) -> str:
        return f"{c.LABEL_NODE}={self.node_name}"


class BringUpError(Exception):
    """A step failed for a reason that retrying will not fix: the RuntimeDisk becomes Failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Aborted(Exception):  # noqa: N818 - a control signal, not an error report
    """The bring-up was asked to stop (its RuntimeDisk is being deleted)."""


@dataclass
class _Worker:
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return -1


class Agent:
    def __init__(
        self,
        kube: AgentKube,
        config: Config,
        metrics: Metrics | None = None,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.kube = kube
        self.config = config
        self.metrics = metrics or Metrics()
        self.now = now
        self.disks: dict[str, Json] = {}
        self.synced = False
        self.watching = False
        self._wake = asyncio.Event()
        self._workers: dict[str, _Worker] = {}
        self._not_before: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch_forever(), name="watch"),
            asyncio.create_task(self._reconcile_forever(), name="reconcile"),
            asyncio.create_task(self._resync_forever(), name="resync"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop the loops and let in-flight bring-ups reach a safe point; mounts stay (pods use them)."""
        for task in self._tasks:
            task.cancel()
        for worker in self._workers.values():
            worker.stop.set()
        pending = [w.task for w in self._workers.values() if w.task is not None]
        await asyncio.gather(*self._tasks, *pending, return_exceptions=True)

    def alive(self) -> str:
        dead = [t.get_name() for t in self._tasks if t.done()]
        return f"loop stopped: {', '.join(dead)}" if dead else ""

    def ready(self) -> str:
        if not self.synced:
            return "RuntimeDisks not listed yet"
        return "" if self.watching else "not watching RuntimeDisks (API server unreachable?)"

    def mark(self) -> None:
        self._wake.set()

    def _mark_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.mark)

    # --- observing -----------------------------------------------------------------------------

    def _mine(self, obj: Mapping[str, Any]) -> bool:
        return bool((obj.get("spec") or {}).get("nodeName") == self.config.node_name)

    def _remember(self, obj: Json) -> None:
        """Keep the newest version of a RuntimeDisk: a write's response may arrive before the watch."""
        name = obj["metadata"]["name"]
        if not self._mine(obj):
            self.disks.pop(name, None)
            return
        known = self.disks.get(name)
        if known is None or _rv(obj) >= _rv(known) or _rv(obj) < 0:
            self.disks[name] = obj

    async def _watch_forever(self) -> None:
        kind, failures = c.RUNTIMEDISK_KIND, 0
        while True:
            try:
                items, version = await self.kube.list_with_version(kind, label_selector=self.config.selector)
                self.disks = {i["metadata"]["name"]: i for i in items if self._mine(i)}
                self.synced = True
                self.mark()
                while True:
                    self.watching = True
                    async for event in self.kube.watch(
                        kind,
                        label_selector=self.config.selector,
                        resource_version=version,
                        timeout_seconds=self.config.watch_timeout_seconds,
                    ):
                        version = event.object.get("metadata", {}).get("resourceVersion", version)
                        if event.type == "BOOKMARK":
                            continue
                        if event.type == "DELETED":
                            self.disks.pop(event.object["metadata"]["name"], None)
                        else:
                            self._remember(event.object)
                        self.mark()
                    failures = 0
            except asyncio.CancelledError:
                raise
            except WatchExpiredError:
                log.info("RuntimeDisk watch expired; listing again")
                self.metrics.watch_restarts.inc()
            except Exception as exc:
                self.watching = False
                failures += 1
                delay = min(_MAX_BACKOFF, 0.5 * 2 ** min(failures, 8))
                log.warning("RuntimeDisk list/watch failed (retry in %.1fs): %s", delay, exc)
                self.metrics.watch_restarts.inc()
                await asyncio.sleep(delay)

    async def _resync_forever(self) -> None:
        # Mounts and the Node change without RuntimeDisk events (a reboot, someone editing labels).
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            self.mark()

    def _view(self, obj: Json) -> plan.DiskView | None:
        try:
            rd = parse_runtimedisk(obj)
        except SpecError as err:
            log.warning("ignoring malformed RuntimeDisk %s: %s", obj["metadata"].get("name"), err)
            return None
        target, problem = plan.target_path(self.config.host_root, rd.spec.mount_path, self.config.mount_root)
        device: tuple[int, int] | None = None
        try:
            found = system.find_device(self.config.dev_root, rd.spec.device_name)
            device = found.number if found else None
        except system.HostError as failure:
            log.debug("RuntimeDisk %s: %s", rd.name, failure)
        return plan.DiskView(
            name=rd.name,
            runtime_id=rd.spec.runtime_id,
            phase=rd.status.phase,
            target=target,
            deleting=rd.deleting,
            holds_finalizer=c.FINALIZER_UNMOUNT in (obj["metadata"].get("finalizers") or []),
            target_problem=problem,
            device=device,
        )

    # --- reconciling ---------------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(_MAX_BACKOFF, 0.5 * 2 ** min(failures, 8))
                self.metrics.reconcile_errors.inc()
                log.warning("reconcile failed (attempt %d, retry in %.1fs): %s", failures, delay, exc)
                self._mark_later(delay)

    async def reconcile_once(self) -> plan.Plan:
        cfg = self.config
        if not self.synced:
            return plan.Plan()
        mounts = await asyncio.to_thread(system.read_mountinfo, cfg.mountinfo_path)
        node = await self.kube.get("Node", cfg.node_name)
        views = tuple(v for v in map(self._view, list(self.disks.values())) if v is not None)
        now = time.monotonic()
        obs = plan.Observation(
            disks=views,
            mounts=mounts,
            mount_dir=cfg.mount_dir,
            node=node_view(node) if node is not None else None,
            busy=frozenset(self._workers),
            synced=self.synced,
        )
        actions = plan.plan(obs)
        self._export(obs, actions)
        retry = False

        if actions.node and node is not None:
            await self._patch_node(node, actions.node)
        for abort in actions.aborts:
            log.info("RuntimeDisk %s: stopping its bring-up (deleted)", abort.name)
            self._workers[abort.name].stop.set()
        for unmount in actions.unmounts:
            retry |= not await self._unmount(unmount)
        for release in actions.releases:
            retry |= not await self._release(release.name)
        for failure in actions.failures:
            await self._fail(failure.name, failure.reason, failure.message)
        for bring_up in actions.bring_ups:
            due = self._not_before.get(bring_up.name, 0.0)
            if due > now:
                self._mark_later(due - now)
                continue
            log.info("RuntimeDisk %s: bringing it up (%s)", bring_up.name, bring_up.reason)
            self._start(bring_up.name)
        if retry:
            self._mark_later(5.0)
        return actions

    def _export(self, obs: plan.Observation, actions: plan.Plan) -> None:
        m = self.metrics
        m.mounted_runtimes.set(len(mountinfo.mounts_below(obs.mounts, obs.mount_dir)))
        m.serving_runtimes.set(len(actions.serving))
        m.bring_ups_in_flight.set(len(self._workers))
        if obs.node is not None:
            m.node_gated.set(1 if obs.node.tainted and not actions.node.remove_taint else 0)
        counts = {str(p): 0 for p in Phase}
        for disk in obs.disks:
            counts[str(disk.phase)] += 1
        for phase, count in counts.items():
            m.runtimedisks.labels(phase=phase).set(count)

    async def _patch_node(self, node: Json, patch: plan.NodePatch) -> None:
        ops: list[Json] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": node["metadata"]["resourceVersion"]}
        ]
        for key in patch.remove_labels:
            ops.append({"op": "remove", "path": f"/metadata/labels/{json_pointer(key)}"})
        if patch.set_labels and not node["metadata"].get("labels"):
            ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
        for key in patch.set_labels:
            ops.append(
                {"op": "add", "path": f"/metadata/labels/{json_pointer(key)}", "value": c.RUNTIME_READY_VALUE}
            )
        if patch.remove_taint:
            taints = [
                t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != c.STARTUP_TAINT_KEY
            ]
            ops.append({"op": "replace", "path": "/spec/taints", "value": taints})
        await self.kube.patch("Node", self.config.node_name, ops, json_patch=True)
        if patch.set_labels or patch.remove_labels:
            log.info(
                "Node %s: runtime labels set %s, removed %s",
                self.config.node_name,
                list(patch.set_labels),
                list(patch.remove_labels),
            )
        if patch.remove_taint:
            log.info("Node %s: every runtime is ready; removed the startup taint", self.config.node_name)
            await self.kube.event(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": self.config.node_name,
                    "uid": node["metadata"]["uid"],
                },
                warning=False,
                reason="StartupTaintRemoved",
                message=f"Every runtime disk is mounted and verified; removed {c.STARTUP_TAINT_KEY}",
            )

    async def _unmount(self, action: plan.Unmount) -> bool:
        what = f"RuntimeDisk {action.name}" if action.name else "an unclaimed mount"
        try:
            layers = await asyncio.to_thread(self._unmount_all, action.target)
        except system.HostError as failure:
            log.warning("%s: could not unmount %s (will retry): %s", what, action.target, failure.message)
            return False
        log.info("%s: unmounted %s (%s, %d layer(s))", what, action.target, action.reason, layers)
        self.metrics.unmounts.labels(reason=action.reason).inc()
        obj = self.disks.get(action.name)
        if obj is not None:
            await self.kube.event(
                involved(obj), warning=False, reason="RuntimeUnmounted", message=f"Unmounted {action.target}"
            )
        return True

    def _unmount_all(self, target: str) -> int:
        layers = 0
        while mountinfo.mounts_at(system.read_mountinfo(self.config.mountinfo_path), target):
            if layers >= _UNMOUNT_LAYERS:
                raise system.HostError("UnmountFailed", f"{target} is still mounted after {layers} unmounts")
            system.unmount(target)
            layers += 1
        system.remove_empty_dir(target)
        return layers

    async def _release(self, name: str) -> bool:
        obj = self.disks.get(name)
        if obj is None:
            return True
        try:
            await self.kube.remove_finalizers(obj, [c.FINALIZER_UNMOUNT])
        except KubeError as exc:
            if exc.status == 404:
                return True
            if exc.status in (409, 422):  # our copy is stale: the watch brings the new one
                return False
            raise
        log.info("RuntimeDisk %s: unmounted; released %s", name, c.FINALIZER_UNMOUNT)
        return True

    async def _fail(self, name: str, reason: str, message: str) -> None:
        def failed(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            return with_phase(status, Phase.FAILED, reason, message, self.now())

        try:
            obj = await self.kube.update_status(name, failed)
        except NotFoundError:
            return
        self._remember(obj)
        self.metrics.failures.labels(reason=reason).inc()
        log.warning("RuntimeDisk %s: Failed: %s: %s", name, reason, message)
        await self.kube.event(
            involved(obj), warning=True, reason="RuntimeFailed", message=f"{reason}: {message}"
        )

    # --- bringing one runtime disk up ------------------------------------------------------------

    def _start(self, name: str) -> None:
        worker = _Worker()
        self._workers[name] = worker
        worker.task = asyncio.create_task(self._bring_up_guarded(name, worker.stop), name=f"bring-up {name}")

    async def _bring_up_guarded(self, name: str, stop: threading.Event) -> None:
        try:
            await self._bring_up(name, stop)
            self._failures.pop(name, None)
            self._not_before.pop(name, None)
        except (Aborted, Stop) as why:
            log.info("RuntimeDisk %s: bring-up stopped: %s", name, why)
        except NotFoundError:
            log.info("RuntimeDisk %s: gone during bring-up", name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The API server or a host call hiccuped: nothing to mark Failed, try again with backoff.
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
            delay = min(_MAX_BACKOFF, 0.5 * 2 ** min(failures, 8))
            self._not_before[name] = time.monotonic() + delay
            log.warning("RuntimeDisk %s: bring-up interrupted (retry in %.1fs): %s", name, delay, exc)
        finally:
            self._workers.pop(name, None)
            self.mark()

    async def _bring_up(self, name: str, stop: threading.Event) -> None:
        cfg = self.config
        mounts = await asyncio.to_thread(system.read_mountinfo, cfg.mountinfo_path)

        def claim(obj: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            if obj["metadata"].get("deletionTimestamp"):
                raise Stop("it is being deleted")
            if status.phase not in (Phase.ATTACHED, Phase.MOUNTING, Phase.READY):
                raise Stop(f"its phase is {status.phase}")
            if status.phase is Phase.READY:
                view = self._view(obj)
                if view is not None and plan.mount_state(view, mounts) is plan.MountState.OURS:
                    raise Stop("it is already Ready and mounted")
            spec = obj["spec"]
            message = (
                f"Waiting for device google-{spec.get('deviceName')} to mount at {spec.get('mountPath')}"
            )
            return with_phase(status, Phase.MOUNTING, "Mounting", message, self.now())

        obj = await self.kube.update_status(name, claim)
        started = time.monotonic()
        self._remember(obj)
        rd = parse_runtimedisk(obj)
        target, problem = plan.target_path(cfg.host_root, rd.spec.mount_path, cfg.mount_root)
        try:
            if problem:
                raise BringUpError("InvalidMountPath", problem)
            await self._bring_up_steps(rd, target, stop, started)
        except BringUpError as failure:
            await self._after_failure(rd, target, failure)
        except system.HostError as failure:
            if failure.reason == "Aborted":
                raise Aborted(failure.message) from None
            await self._after_failure(rd, target, BringUpError(failure.reason, failure.message))

    async def _bring_up_steps(
        self, rd: RuntimeDisk, target: str, stop: threading.Event, started: float
    ) -> None:
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
            self._still_mounting(status)
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

        self._remember(await self.kube.update_status(rd.name, mounted))
        check_stop()

        # 3. the manifest digest
        if not spec.image_digest:
            raise BringUpError(
                "DigestUnknown",
                "expected spec.imageDigest to name the runtime's manifest digest, found it empty: "
                "the runtime cannot be verified",
            )
        t0 = time.monotonic()
        result = await asyncio.to_thread(manifest.verify, Path(target), spec.image_digest, cfg.verify_mode)
        verify_seconds = time.monotonic() - t0
        m.verify_seconds.observe(verify_seconds)
        if not result.ok:
            raise verify_failure(result, device.path)
        check_stop()

        def verified(_: Json, status: RuntimeDiskStatus) -> RuntimeDiskStatus:
            self._still_mounting(status)
            durations = {**status.timings.durations_seconds, "verify": round(verify_seconds, 3)}
            return replace(
                status,
                message=f"Verified {spec.image_digest} ({result.mode.value}); prefetching",
                timings=replace(status.timings, verified=self.now(), durations_seconds=durations),
            )

        self._remember(await self.kube.update_status(rd.name, verified))

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
            self._still_mounting(status)
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

        obj = await self.kube.update_status(rd.name, ready)
        self._remember(obj)
        log.info("RuntimeDisk %s: Ready", rd.name)
        await self.kube.event(involved(obj), warning=False, reason="RuntimeReady", message=message)
        if fetched.skipped:
            await self.kube.event(
                involved(obj),
                warning=True,
                reason="PrefetchSkipped",
                message=f"Not prefetched: {', '.join(fetched.skipped)}",
            )

    @staticmethod
    def _still_mounting(status: RuntimeDiskStatus) -> None:
        if status.phase is not Phase.MOUNTING:
            raise Stop(f"its phase changed to {status.phase} during the bring-up")

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
                await asyncio.to_thread(self._unmount_all, target)
            except system.HostError as exc:
                log.warning("RuntimeDisk %s: could not unmount after failure: %s", rd.name, exc.message)
        await self._fail(rd.name, failure.reason, failure.message)


def node_view(node: Json) -> plan.NodeView:
    return plan.NodeView(
        name=node["metadata"]["name"],
        tainted=any(
            t.get("key") == c.STARTUP_TAINT_KEY for t in (node.get("spec") or {}).get("taints") or []
        ),
        runtime_labels=plan.runtime_labels(node["metadata"].get("labels") or {}),
    )


def json_pointer(key: str) -> str:
    """A label key as one JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def with_phase(
    status: RuntimeDiskStatus, phase: Phase, reason: str, message: str, now: datetime
) -> RuntimeDiskStatus:
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


def verify_failure(result: manifest.VerifyResult, device: str) -> BringUpError:
    where = f"/{manifest.MANIFEST_PATH} on {device}"
    if result.manifest_digest is not None and result.manifest_digest != result.expected_digest:
        return BringUpError(
            "DigestMismatch",
            f"expected manifest digest {result.expected_digest} (spec.imageDigest), "
            f"found {result.manifest_digest} in {where}",
        )
    if result.manifest_digest is None:
        return BringUpError(
            "ManifestInvalid",
            f"expected a runtime manifest digesting to {result.expected_digest}, found: {result.summary()}",
        )
    return BringUpError(
        "RuntimeMismatch",
        f"expected the runtime tree described by {result.expected_digest} ({result.mode.value} check), "
        f"found: {result.summary()}",
    )
