"""One pod's life on its node, as the kubelet's pod worker lives it (pkg/kubelet/pod_workers.go, kuberuntime).

Volumes first (retried with the volume manager's back-off, 0.5 s doubling up to 2m2s, a ``FailedMount`` Event
each time), then the sandbox (``sandbox.py pause`` in new PID, mount, network and UTS namespaces), then each
container: its config (a failure is ``CreateContainerConfigError``), ``Pulled``/``Created``/``Started``,
probes, exits and restarts under ``restartPolicy`` with the crash-loop back-off. Deletion stops the
containers with SIGTERM, SIGKILL after the grace period, and ends with the kubelet's final delete (grace 0).
Every process is started from this worker's own thread: ``PR_SET_PDEATHSIG`` is tied to the spawning thread,
and the sandbox is the PID namespace's init, so everything the pod started dies with this thread or with the
runner's process, and the pod's mounts die with its namespaces.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from sdworker_tools import procs
from sdworker_tools.podrunner import spec as s
from sdworker_tools.podrunner import status as st
from sdworker_tools.podrunner import volumes as v
from sdworker_tools.podrunner.events import Recorder, delete_pod, patch_status
from sdworker_tools.podrunner.image import BaseImage
from sdworker_tools.podrunner.probes import Prober
from sdworker_tools.wait import Abort, wait_for

Json = dict[str, Any]
log = logging.getLogger(__name__)
MOUNT_RETRY_INITIAL = 0.5
SANDBOX_MODULE = "sdworker_tools.podrunner.sandbox"
NAMESPACES = ("--mount", "--net", "--pid", "--uts", "--ipc")


@dataclass(frozen=True)
class Node:
    """What a pod's worker needs from the runner."""

    core: client.CoreV1Api
    name: str
    host_root: Path
    host_ip: str
    image: BaseImage
    image_files: Json  # the base-image emulation handed to the sandbox (see runner.base_image_files)
    workdir: Path
    backoff_initial: float
    backoff_cap: float
    mount_retry_cap: float


@dataclass
class Container:
    spec: Json
    state: st.ContainerState
    backoff: s.Backoff
    proc: procs.Process | None = None
    prober: Prober | None = None
    attempt: int = 0
    started_at: str = ""
    finished: float = 0.0
    next_start: float = 0.0
    logs: list[Path] = field(default_factory=list)


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it for whole seconds (10s, 1m20s, 5m0s)."""
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class PodWorker(threading.Thread):
    def __init__(self, node: Node, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node = node
        self.pod = pod
        self.uid: str = meta["uid"]
        self.ref = f"{meta['name']}_{meta['namespace']}({self.uid})"
        self.events = Recorder(node.core, node.name)
        self.dir = node.workdir / "pods" / self.uid
        self.state_dir = self.dir / "state"
        self.containers = [
            Container(
                c,
                st.ContainerState(c["name"], c.get("image", "")),
                s.Backoff(node.backoff_initial, node.backoff_cap),
            )
            for c in pod["spec"]["containers"]
        ]
        self.view = st.PodView(
            host_ip=node.host_ip,
            start_time=st.now_rfc3339(),
            readiness_gates=[g["conditionType"] for g in pod["spec"].get("readinessGates", [])],
        )
        self.sandbox: procs.Process | None = None
        self.sandbox_pid = 0
        self._wake = threading.Event()
        self._kill = threading.Event()
        self._lock = threading.Lock()
        self._posted: Json | None = None
        self.finished = threading.Event()

    # --- from the runner's thread -------------------------------------------------------------------

    def update(self, pod: Json) -> None:
        with self._lock:
            self.pod = pod
        self._wake.set()

    def kill(self) -> None:
        """Stop at once without API writes: the node or the runner goes away."""
        self._kill.set()
        self._wake.set()

    @property
    def netns(self) -> Path:
        return Path(f"/proc/{self.sandbox_pid}/ns/net")

    def log_paths(self, container: str) -> list[Path]:
        return next((c.logs for c in self.containers if c.spec["name"] == container), [])

    # --- the worker thread --------------------------------------------------------------------------

    def _deleting(self) -> bool:
        with self._lock:
            return self.pod["metadata"].get("deletionTimestamp") is not None

    def _pause(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod worker %s failed", self.ref)
        finally:
            self._teardown()
            self.finished.set()

    def _run(self) -> None:
        self.dir.mkdir(parents=True, mode=0o700)
        self.state_dir.mkdir(mode=0o700)
        self._post()
        volumes = self._mount_volumes()
        if self._kill.is_set():
            return
        if volumes is not None and not self._deleting():
            self._start_sandbox(*volumes)
            self.view.sandbox_ready = True
            while not self._kill.is_set() and not self._deleting():
                for c in self.containers:
                    self._sync(c)
                self._post()
                self._pause(0.2)
        if self._kill.is_set():
            return
        self._terminate()
        # As the kubelet's status manager: the object goes only once the sandbox and volumes are gone.
        self._teardown()
        delete_pod(self.node.core, self.pod)

    def _mount_volumes(self) -> tuple[list[Json], dict[str, v.Payload]] | None:
        retry = MOUNT_RETRY_INITIAL
        while not self._kill.is_set() and not self._deleting():
            try:
                return v.plan(self.pod, self.node.host_root, self._secret, self._config_map, self._token)
            except v.MountError as exc:
                self.events.event(self.pod, "Warning", "FailedMount", str(exc))
            self._pause(retry)
            retry = min(retry * 2, self.node.mount_retry_cap)
        return None

    def _secret(self, name: str) -> dict[str, bytes] | None:
        try:
            secret = self.node.core.read_namespaced_secret(name, self.pod["metadata"]["namespace"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(val) for k, val in (secret.data or {}).items()}

    def _token(self, audience: str, expiration: int) -> str:
        """A ServiceAccount token bound to this pod, as the kubelet's token manager requests it."""
        meta = self.pod["metadata"]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        request = {
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            }
        }
        response = self.node.core.create_namespaced_service_account_token(account, meta["namespace"], request)
        return str(response.status.token)

    def _config_map(self, name: str) -> dict[str, str] | None:
        try:
            cm = self.node.core.read_namespaced_config_map(name, self.pod["metadata"]["namespace"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    def _in_pod(self, path: Path) -> Path:
        """A path of the pod's mount namespace, reached from the host through the sandbox's root."""
        return Path(f"/proc/{self.sandbox_pid}/root") / str(path).lstrip("/")

    def _start_sandbox(self, volumes: list[Json], payloads: dict[str, v.Payload]) -> None:
        meta = self.pod["metadata"]
        config = {
            "state": str(self.state_dir),
            "hostname": self.pod["spec"].get("hostname") or meta["name"],
            "volumes": volumes,
            "image": self.node.image_files | {"resolv_conf": self._resolv_conf()},
        }
        path = self.dir / "sandbox.json"
        path.write_text(json.dumps(config))
        argv = [
            "unshare",
            *NAMESPACES,
            "--fork",
            "--kill-child",
            "--propagation",
            "slave",
            sys.executable,
            "-I",
            "-m",
            SANDBOX_MODULE,
            "pause",
            str(path),
        ]
        self.sandbox = sandbox = procs.Process(f"sandbox-{meta['name']}", argv, self.dir / "sandbox.log")

        def ready() -> int:
            if not sandbox.alive():
                raise Abort(f"the pod sandbox exited:\n{sandbox.log_tail()}")
            children = Path(f"/proc/{sandbox.pid}/task/{sandbox.pid}/children").read_text().split()
            if children and (Path(f"/proc/{children[0]}/root") / str(self.state_dir / "ready")[1:]).exists():
                return int(children[0])
            return 0

        self.sandbox_pid = wait_for(ready, timeout=30, what=f"the sandbox of {self.ref}", interval=0.05)
        for name, payload in payloads.items():
            v.write_payload(self._in_pod(self.state_dir / "volumes" / name), payload)

    def _resolv_conf(self) -> str:
        # The kubelet's ClusterFirst resolv.conf; the cluster DNS address is unreachable from the pod.
        namespace = self.pod["metadata"]["namespace"]
        return (
            f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 10.0.0.10\noptions ndots:5\n"
        )

    def _sync(self, c: Container) -> None:
        now = time.monotonic()
        if c.proc is None:
            if now >= c.next_start:
                self._start(c)
            return
        code = c.proc.popen.poll()
        if code is None:
            assert c.prober is not None
            if c.prober.kill_reason is not None:
                name = c.spec["name"]
                self.events.event(
                    self.pod,
                    "Normal",
                    "Killing",
                    f"Container {name} failed {c.prober.kill_reason} probe, will be restarted",
                    name,
                )
                c.proc.stop(timeout=self._grace())
                code = c.proc.popen.returncode
            else:
                c.state.started, c.state.ready = c.prober.started, c.prober.ready
                return
        self._exited(c, code)

    def _grace(self) -> float:
        with self._lock:
            meta, pod_spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod_spec.get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _exited(self, c: Container, code: int) -> None:
        assert c.proc is not None
        assert c.prober is not None
        c.prober.stop()
        c.proc.stop()
        c.proc = c.prober = None
        exit_code = code if code >= 0 else 128 - code
        c.finished = time.monotonic()
        terminated = st.Terminated.of(exit_code, c.started_at, st.now_rfc3339())
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
            c.state.exit(terminated)
            c.next_start = math.inf
            return
        c.state.last_terminated = terminated
        wait = c.backoff.wait(c.finished, time.monotonic())
        c.next_start = c.finished + wait
        if wait > 0:
            name = c.spec["name"]
            c.state.wait(
                "CrashLoopBackOff",
                f"back-off {go_duration(c.backoff.delay)} restarting failed container={name} pod={self.ref}",
            )
            self.events.event(
                self.pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {name} in pod {self.ref}",
                name,
            )
        else:
            c.state.exit(terminated)

    def _start(self, c: Container) -> None:
        name = c.spec["name"]
        image = self.node.image
        try:
            declared, env = s.container_env(self.pod, c.spec, image, self._secret, self._config_map)
            argv = s.command_line(c.spec, declared)
            who = s.identity(self.pod, c.spec, image)
            cwd = s.working_dir(c.spec, image)
            probes = {kind: s.probe(c.spec, kind) for kind in ("startup", "readiness", "liveness")}
        except (s.ContainerConfigError, ValueError) as exc:
            c.state.wait("CreateContainerConfigError", str(exc))
            self.events.event(self.pod, "Warning", "Failed", f"Error: {exc}", name)
            c.next_start = time.monotonic() + MOUNT_RETRY_INITIAL * 4
            return
        self.events.event(
            self.pod,
            "Normal",
            "Pulled",
            f'Container image "{c.spec.get("image", "")}" already present on machine',
            name,
        )
        c.attempt += 1
        cid = f"{name}-{c.attempt}"
        env_path = self._in_pod(self.state_dir / "env" / f"{cid}.json")
        fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(env, f)
        mounts = [
            {
                "volume": m["name"],
                "path": m["mountPath"],
                "sub_path": m.get("subPath", ""),
                "read_only": bool(m.get("readOnly", False)) or self._forced_read_only(m["name"]),
                "propagation": m.get("mountPropagation", "None"),
            }
            for m in c.spec.get("volumeMounts", [])
        ]
        config = {
            "state": str(self.state_dir),
            "id": cid,
            "image": self.node.image_files,
            "mounts": mounts,
            "cwd": cwd,
            "read_only_root": who.read_only_root,
            "uid": who.uid,
            "gid": who.gid,
            "groups": list(who.groups),
            "no_new_privs": who.no_new_privs,
            "argv": argv,
        }
        path = self.dir / f"{cid}.json"
        path.write_text(json.dumps(config))
        log_path = self.dir / "logs" / f"{cid}.log"
        log_path.parent.mkdir(exist_ok=True)
        c.logs.append(log_path)
        argv_ns = [
            "nsenter",
            "-t",
            str(self.sandbox_pid),
            *NAMESPACES,
            "--",
            sys.executable,
            "-I",
            "-m",
            SANDBOX_MODULE,
            "container",
            str(path),
        ]
        if c.attempt > 1:
            c.state.restart_count += 1
            c.backoff.restarted(time.monotonic())
        self.events.event(self.pod, "Normal", "Created", f"Created container: {name}", name)
        c.proc = procs.Process(
            f"{self.ref}/{name}", argv_ns, log_path, env={"PATH": os.environ.get("PATH", "")}
        )
        c.started_at = st.now_rfc3339()
        c.state.run(c.started_at, f"sdworker://{uuid.uuid4().hex}")
        self.events.event(self.pod, "Normal", "Started", f"Started container {name}", name)

        def unhealthy(message: str) -> None:
            self.events.event(self.pod, "Warning", "Unhealthy", message, name)

        c.prober = Prober(self.netns, probes, unhealthy, self._wake.set)
        c.prober.start()

    def _forced_read_only(self, volume: str) -> bool:
        """Secret, ConfigMap, downward API and projected volumes are always read-only (kubelet >= v1.10)."""
        for vol in self.pod["spec"].get("volumes", []):
            if vol["name"] == volume:
                return any(kind in vol for kind in ("secret", "configMap", "projected", "downwardAPI"))
        return False

    def _post(self) -> None:
        with self._lock:
            pod = self.pod
        if self._posted is not None:
            self.view.previous_conditions = self._posted.get("conditions", [])
        policy = pod["spec"].get("restartPolicy", "Always")
        body = st.pod_status(policy, [c.state for c in self.containers], self.view)
        if body == self._posted:
            return
        try:
            patch_status(self.node.core, pod, body)
            self._posted = body
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s not written: %s", self.ref, exc.reason)
        except Exception as exc:  # the apiserver unreachable for a moment: the next change retries
            log.warning("status of %s not written: %s: %s", self.ref, type(exc).__name__, exc)

    def _terminate(self) -> None:
        """Graceful stop on deletion: SIGTERM, SIGKILL after the grace period, terminated states posted."""
        grace = self._grace()
        for c in self.containers:
            if c.proc is None:
                continue
            name = c.spec["name"]
            self.events.event(self.pod, "Normal", "Killing", f"Stopping container {name}", name)
            assert c.prober is not None
            c.prober.stop()
            c.proc.stop(timeout=max(grace, 0.1))
            code = c.proc.popen.returncode
            c.state.exit(st.Terminated.of(code if code >= 0 else 128 - code, c.started_at, st.now_rfc3339()))
            c.proc = c.prober = None
        self._post()

    def _teardown(self) -> None:
        for c in self.containers:
            if c.prober is not None:
                c.prober.stop()
            if c.proc is not None:
                c.proc.stop(timeout=2)
            c.proc = c.prober = None
        if self.sandbox is not None:
            self.sandbox.stop(timeout=5)  # the PID namespace's init: its exit kills what is left in the pod
            self.sandbox = None
        self.sandbox_pid = 0
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.dir)
