"""The node agent's control loop: observe, plan, act.

Owns the in-memory view of this node's RuntimeDisks (a server-side filtered list+watch) and the reconcile
loop that turns each observation into actions through ``sdworker_agent.plan``: the Node patch
(``sdworker_agent.nodepatch``), unmounts, finalizer releases, ``Failed`` marks, and the bring-ups it
starts and stops (``sdworker_agent.bringup``).

Both run on the operator's work queue (``sdworker.workqueue``, docs/architecture.md): reconcile passes are
the one key of one queue (marks coalesce, a pass never runs twice at once, a mark during a pass runs one
more, a pass that raised runs again after back-off), and bring-ups are keyed by RuntimeDisk in a second
queue, which retries one that the API server or the host interrupted after back-off; until that retry, the
plan's repeated "bring it up" is left to the queue.

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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sdworker.api import constants as c
from sdworker.api.parse import SpecError, parse_runtimedisk
from sdworker.api.types import Phase
from sdworker.kube.client import Json, KubeError
from sdworker.workqueue import WorkQueue, backoff
from sdworker_agent import mountinfo, nodepatch, plan, system
from sdworker_agent.bringup import Aborted, BringUp
from sdworker_agent.config import Config
from sdworker_agent.kubeio import AgentKube, NotFoundError, Stop, WatchExpiredError, involved
from sdworker_agent.metrics import Metrics

log = logging.getLogger("sdworker_agent")

_MAX_BACKOFF: Final = 60.0
_BRING_UP_WORKERS: Final = 16  # a node has a handful of runtimes: in practice, every one at once
_RETRY_STUCK: Final = 5.0  # an unmount or finalizer release that did not go through


@dataclass
class _Worker:
    """A bring-up wanted or running: ``stop`` asks it to end at its next step, ``done`` says it ended."""

    stop: threading.Event = field(default_factory=threading.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False


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
        self.disks: dict[str, Json] = {}
        self.synced = False
        self.watching = False
        self.bring_up = BringUp(
            kube,
            config,
            self.metrics,
            now=now,
            remember=self._remember,
            view=self._view,
            latest=lambda name: self.disks.get(name),
        )
        self._reconciles = WorkQueue[str](
            self._reconcile, name="reconcile", max_delay=_MAX_BACKOFF, on_error=self._reconcile_failed
        )
        self._bring_ups = WorkQueue[str](
            self._bring_up_one,
            name="bring-up",
            concurrency=_BRING_UP_WORKERS,
            max_delay=_MAX_BACKOFF,
            on_error=self._bring_up_failed,
        )
        self._workers: dict[str, _Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._bring_up_task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch_forever(), name="watch"),
            asyncio.create_task(self._reconciles.run(), name="reconcile"),
            asyncio.create_task(self._resync_forever(), name="resync"),
        ]
        # Not gathered with the loops: cancelling the agent must not cancel a bring-up between its steps.
        self._bring_up_task = asyncio.create_task(self._bring_ups.run(), name="bring-ups")
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop the loops and let in-flight bring-ups reach a safe point; mounts stay (pods use them)."""
        self._stopping = True  # a retry falling due from now on does not start
        for task in self._tasks:
            task.cancel()
        await self._reconciles.close()
        workers = list(self._workers.values())
        for worker in workers:
            worker.stop.set()
        running = [w.done.wait() for w in workers if w.started]
        await asyncio.gather(*running, return_exceptions=True)
        await self._bring_ups.close()
        await asyncio.gather(*self._tasks, *filter(None, [self._bring_up_task]), return_exceptions=True)

    def alive(self) -> str:
        dead = [t.get_name() for t in [*self._tasks, *filter(None, [self._bring_up_task])] if t.done()]
        return f"loop stopped: {', '.join(dead)}" if dead else ""

    def ready(self) -> str:
        if not self.synced:
            return "RuntimeDisks not listed yet"
        return "" if self.watching else "not watching RuntimeDisks (API server unreachable?)"

    def mark(self) -> None:
        """Ask for a reconcile pass (marks coalesce)."""
        self._reconciles.add(self.config.node_name)

    def _mark_later(self, delay: float) -> None:
        self._reconciles.add_after(self.config.node_name, delay)

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
                # Never sooner than the API server's Retry-After (its 429s under load: KubeError.retry_after).
                delay = max(backoff(failures, cap=_MAX_BACKOFF), getattr(exc, "retry_after", None) or 0.0)
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

    async def _reconcile(self, _: str) -> None:
        await self.reconcile_once()

    def _reconcile_failed(self, _: str, exc: BaseException, failures: int, delay: float) -> None:
        self.metrics.reconcile_errors.inc()
        log.warning("reconcile failed (attempt %d, retry in %.1fs): %s", failures, delay, exc)

    async def reconcile_once(self) -> plan.Plan:
        cfg = self.config
        if not self.synced:
            return plan.Plan()
        mounts = await asyncio.to_thread(system.read_mountinfo, cfg.mountinfo_path)
        node = await self.kube.get("Node", cfg.node_name)
        views = tuple(v for v in map(self._view, list(self.disks.values())) if v is not None)
        obs = plan.Observation(
            disks=views,
            mounts=mounts,
            mount_dir=cfg.mount_dir,
            node=nodepatch.node_view(node) if node is not None else None,
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
            await self.bring_up.fail(failure.name, failure.reason, failure.message)
        for bring_up in actions.bring_ups:
            if self._bring_ups.failures(bring_up.name):
                continue  # interrupted before: the queue brings it up again after its back-off
            log.info("RuntimeDisk %s: bringing it up (%s)", bring_up.name, bring_up.reason)
            self._workers[bring_up.name] = _Worker()  # busy from now on, for the next pass's plan
            self._bring_ups.add(bring_up.name)
        if retry:
            self._mark_later(_RETRY_STUCK)
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
        name = self.config.node_name
        await self.kube.patch("Node", name, nodepatch.json_patch(node, patch), json_patch=True)
        if patch.set_labels or patch.remove_labels:
            log.info(
                "Node %s: runtime labels set %s, removed %s",
                name,
                list(patch.set_labels),
                list(patch.remove_labels),
            )
        if patch.remove_taint:
            log.info("Node %s: every runtime is ready; removed the startup taint", name)
            await self.kube.event(
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]},
                warning=False,
                reason="StartupTaintRemoved",
                message=f"Every runtime disk is mounted and verified; removed {c.STARTUP_TAINT_KEY}",
            )

    async def _unmount(self, action: plan.Unmount) -> bool:
        what = f"RuntimeDisk {action.name}" if action.name else "an unclaimed mount"
        try:
            layers = await asyncio.to_thread(system.unmount_all, self.config.mountinfo_path, action.target)
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

    # --- bring-ups in flight -------------------------------------------------------------------

    async def _bring_up_one(self, name: str) -> None:
        worker = self._workers.setdefault(name, _Worker())  # a retry from the queue was not planned
        if worker.stop.is_set() or self._stopping:  # aborted (or the agent stopping) before it started
            self._workers.pop(name, None)
            return
        worker.started = True
        try:
            await self.bring_up.run(name, worker.stop)
        except (Aborted, Stop) as why:
            log.info("RuntimeDisk %s: bring-up stopped: %s", name, why)
        except NotFoundError:
            log.info("RuntimeDisk %s: gone during bring-up", name)
        finally:
            self._workers.pop(name, None)
            worker.done.set()
            self.mark()

    def _bring_up_failed(self, name: str, exc: BaseException, _: int, delay: float) -> None:
        # The API server or a host call hiccuped: nothing to mark Failed, try again with back-off.
        log.warning("RuntimeDisk %s: bring-up interrupted (retry in %.1fs): %s", name, delay, exc)
