"""The pod runner plays the kubelet for SD pods on kwok nodes: real processes, volumes, probes and status.

Pods are created here directly with the SD pods' label (``sdworker.dev/sdworker``), bound to a kwok node
whose host root is a directory of the test; kwok's pod stages skip them (tools/testcluster/stages), so
everything their status says comes from the runner. Each container is a real Python 3.10 process in the
pod's own namespaces; what it sees (uid, groups, environment, files) it prints, and the test reads its log.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sdworker.api import constants as c
from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster
from sdworker_tools.podrunner import PodRunner
from sdworker_tools.podrunner import image as base_image
from sdworker_tools.podrunner.runner import sweep_stale_workdirs
from sdworker_tools.wait import wait_for

Json = dict[str, Any]
PY = "/usr/bin/python3.10"  # the base image's interpreter (images/Dockerfile.base SDWORKER_PYTHON)
RUNTIME = "/var/lib/sdworker/runtimes/test-runtime"


def _our_mounts(*roots: Path) -> list[str]:
    """Mounts in the host's namespace under the runner's state or the test's host roots: there must be none,
    since every mount a pod needs is made in the pod's own mount namespace."""
    prefixes = ("/run/sdworker-podrunner-", *(str(r) for r in roots))
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(prefixes)]


def _processes(marker: str) -> list[int]:
    """The pids whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _in_netns(inode: int) -> list[int]:
    """The pids in the network namespace ``inode``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.stat(proc / "ns" / "net").st_ino == inode:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


class Rig:
    """One kwok node with a host root, and a pod runner that runs only that node's SD pods."""

    def __init__(self, cluster: LocalCluster, core: client.CoreV1Api, hosts: Path, node: str) -> None:
        self.cluster, self.core, self.node = cluster, core, node
        self.host_root = hosts / node
        self.host_root.mkdir(parents=True)
        cluster.add_gpu_node(node)
        self.runner = PodRunner(
            cluster.kubeconfig,
            host_root=lambda n: self.host_root if n == node else None,
            backoff_initial=1.0,
            mount_retry_cap=1.0,
            poll_interval=0.2,
            log=lambda _line: None,
        )

    def pod(self, namespace: str, name: str, script: str, **spec: Any) -> Json:
        extra = spec.pop("container", {})
        container: Json = {
            "name": "main",
            "image": "sdworker-base:test",
            "command": [*extra.pop("command", [PY, "-c"]), textwrap.dedent(script)],
            **extra,
        }
        manifest: Json = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {c.LABEL_SDWORKER: name, c.LABEL_APP_MANAGED_BY: c.MANAGED_BY},
            },
            "spec": {
                "nodeName": self.node,
                "automountServiceAccountToken": spec.pop("automountServiceAccountToken", False),
                "terminationGracePeriodSeconds": 3,
                "containers": [container],
                **spec,
            },
        }
        self.core.create_namespaced_pod(namespace, manifest)
        return manifest

    def status(self, namespace: str, name: str) -> Json:
        pod = self.core.read_namespaced_pod(name, namespace)
        status: Json = client.ApiClient().sanitize_for_serialization(pod.status)
        return status

    def describe(self, namespace: str, name: str) -> str:
        """The pod's status and its container's output, for failure messages."""
        return f"{self.status(namespace, name)}\n--- output ---\n{self.runner.logs(namespace, name)}"

    def container(self, namespace: str, name: str) -> Json:
        statuses = self.status(namespace, name).get("containerStatuses") or [{}]
        return dict(statuses[0])

    def events(self, namespace: str, name: str, reason: str) -> list[str]:
        found = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        return [e.message for e in found.items if e.reason == reason]

    def seen(self, namespace: str, name: str) -> Json | None:
        """The JSON line the container printed about itself, once it has."""
        for line in self.runner.logs(namespace, name).splitlines():
            if line.startswith("{"):
                seen: Json = json.loads(line)
                return seen
        return None


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@pytest.fixture(scope="module")
def rig(cluster: LocalCluster, core: client.CoreV1Api, hosts: Path) -> Iterator[Rig]:
    rig = Rig(cluster, core, hosts, "podrunner-node")
    rig.runner.start()
    yield rig
    rig.runner.stop()
    core.delete_node(rig.node)


def test_missing_runtime_stays_container_creating_then_starts(rig: Rig, namespace: str) -> None:
    rig.pod(
        namespace,
        "mount",
        """
        import os, sys, time
        print("runtime holds", sorted(os.listdir("/runtime")), sys.prefix, sys.base_prefix, flush=True)
        time.sleep(3600)
        """,
        volumes=[{"name": "runtime", "hostPath": {"path": RUNTIME, "type": "Directory"}}],
        container={
            # The runtime disk's venv, whose python links to the base image's interpreter.
            "command": ["/runtime/venv/bin/python", "-c"],
            "volumeMounts": [
                {
                    "name": "runtime",
                    "mountPath": "/runtime",
                    "readOnly": True,
                    "mountPropagation": "HostToContainer",
                }
            ],
        },
    )
    expected = (
        'MountVolume.SetUp failed for volume "runtime" : '
        + f"hostPath type check failed: {RUNTIME} is not a directory"
    )
    wait_for(
        lambda: expected in rig.events(namespace, "mount", "FailedMount"),
        timeout=30,
        what="a FailedMount event with the kubelet's message",
        describe=lambda: rig.events(namespace, "mount", "FailedMount"),
    )
    status = rig.status(namespace, "mount")
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"

    # The agent mounts the runtime: the pod starts by itself on the next retry.
    runtime = rig.host_root / RUNTIME.lstrip("/")
    (runtime / "venv" / "bin").mkdir(parents=True)
    (runtime / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    (runtime / "venv" / "bin" / "python").symlink_to(PY)
    wait_for(
        lambda: "runtime holds ['venv'] /runtime/venv /usr" in rig.runner.logs(namespace, "mount"),
        timeout=30,
        what="the container to list the runtime",
        describe=lambda: rig.describe(namespace, "mount"),
    )
    status = rig.status(namespace, "mount")
    assert status["phase"] == "Running"
    assert "running" in status["containerStatuses"][0]["state"]


def test_exiting_command_crash_loops_with_growing_restart_count(rig: Rig, namespace: str) -> None:
    rig.pod(namespace, "crash", "import sys; print('failing'); sys.exit(3)")

    def crash_looping() -> Json | None:
        cs = rig.container(namespace, "crash")
        waiting = cs.get("state", {}).get("waiting") or {}
        return cs if waiting.get("reason") == "CrashLoopBackOff" else None

    first = wait_for(
        crash_looping, timeout=30, what="CrashLoopBackOff", describe=lambda: rig.container(namespace, "crash")
    )
    assert first["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in first["state"]["waiting"]["message"]
    wait_for(
        lambda: rig.container(namespace, "crash").get("restartCount", 0) > first["restartCount"],
        timeout=30,
        what="restartCount to grow",
    )
    assert rig.status(namespace, "crash")["phase"] == "Running"  # restartPolicy Always: the pod keeps running
    assert rig.events(namespace, "crash", "BackOff")


def test_connection_outside_loopback_fails(rig: Rig, namespace: str) -> None:
    # 192.0.2.1 is TEST-NET-1: nothing leaves the pod's network namespace, which has loopback only.
    rig.pod(
        namespace,
        "egress",
        "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)",
        restartPolicy="Never",
    )
    terminated = wait_for(
        lambda: rig.container(namespace, "egress").get("state", {}).get("terminated"),
        timeout=30,
        what="the container to exit",
    )
    assert terminated["exitCode"] == 1
    assert "Network is unreachable" in rig.runner.logs(namespace, "egress")
    assert rig.status(namespace, "egress")["phase"] == "Failed"


SERVER = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = os.path.exists("/data/ready")
        if self.path == "/ready" and not ready:
            self.send_response(503); self.end_headers(); return
        if self.path == "/ready":
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok"); return
        if self.path == "/make-ready":
            open("/data/ready", "w").close()
        self.send_response(200); self.end_headers()
        self.wfile.write(f"hello from {os.uname().nodename}".encode())

http.server.HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def test_readiness_probe_makes_the_pod_ready_and_forward_reaches_it(rig: Rig, namespace: str) -> None:
    rig.pod(
        namespace,
        "web",
        SERVER,
        volumes=[{"name": "data", "emptyDir": {}}],
        container={
            "ports": [{"name": "http", "containerPort": 8080}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "startupProbe": {
                "httpGet": {"path": "/", "port": "http"},
                "periodSeconds": 1,
                "failureThreshold": 30,
            },
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
        },
    )
    started = wait_for(
        lambda: (cs := rig.container(namespace, "web")).get("started") and cs,
        timeout=30,
        what="the startup probe to pass",
        describe=lambda: rig.status(namespace, "web"),
    )
    assert started["ready"] is False  # /ready answers 503 until the process says otherwise
    ready = {cond["type"]: cond["status"] for cond in rig.status(namespace, "web")["conditions"]}
    assert ready["Ready"] == "False"
    wait_for(
        lambda: any(
            "Readiness probe failed: HTTP probe failed with statuscode: 503" in m
            for m in rig.events(namespace, "web", "Unhealthy")
        ),
        timeout=30,
        what="an Unhealthy event for the failing readiness probe",
    )

    port = rig.runner.forward(namespace, "web", 8080)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/make-ready", timeout=10) as resp:
        assert resp.read() == b"hello from web"  # the pod's own hostname, through its own network
    wait_for(
        lambda: (
            {c["type"]: c["status"] for c in rig.status(namespace, "web")["conditions"]}.get("Ready")
            == "True"
        ),
        timeout=30,
        what="the pod to become Ready",
        describe=lambda: rig.status(namespace, "web"),
    )
    cs = rig.container(namespace, "web")
    assert (cs["ready"], cs["started"], cs["restartCount"]) == (True, True, 0)


IDENTITY = """
import errno, json, os, stat, sys
def probe_write(path):
    try:
        open(path, "w").close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def fill(path, size):
    try:
        with open(path, "wb") as f:
            f.write(b"x" * size)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
secret = "/secrets/auth/api"
VARS = ("PLAIN", "FROM_SECRET", "OPTIONAL", "EXPANDED", "ESCAPED", "HOME")
st = os.stat(secret) if os.path.exists(secret) else None
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "cwd": os.getcwd(),
    "argv": sys.argv[1:],
    "env": {k: os.environ.get(k) for k in VARS},
    "secret": None if st is None else {
        "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid,
        "content": open(secret).read(),
    },
    "secret_files": sorted(os.listdir("/secrets/auth")) if os.path.isdir("/secrets/auth") else None,
    "write_secret_dir": probe_write("/secrets/auth/new") if os.path.isdir("/secrets/auth") else None,
    "write_root": probe_write("/etc/new-file"),
    "fill_data_2MiB": fill("/data/big", 2 * 1024 * 1024),
    "python": sys.executable, "version": list(sys.version_info[:2]), "prefix": sys.prefix,
    "home_owner": [os.stat(os.environ["HOME"]).st_uid, os.stat(os.environ["HOME"]).st_gid],
}), flush=True)
"""


def test_environment_identity_and_secret_files_as_the_kubelet_sets_them(
    rig: Rig, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "auth"}, "stringData": {"api": "user:pass", "gradio": "g:p", "other": "x"}},
    )
    rig.pod(
        namespace,
        "identity",
        IDENTITY,
        restartPolicy="Never",
        securityContext={"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000},
        volumes=[
            {"name": "data", "emptyDir": {"sizeLimit": "1Mi"}},
            {
                "name": "auth",
                "secret": {
                    "secretName": "auth",
                    "defaultMode": 0o440,
                    "items": [{"key": "api", "path": "api"}],
                },
            },
        ],
        container={
            "args": ["$(PLAIN)", "$$(PLAIN)", "$(UNDEFINED)"],
            # Not the image's WORKDIR: its home (0750, the image user's) is closed to uid 2000, and a
            # real runtime fails the start with "chdir to cwd ... permission denied" just the same.
            "workingDir": "/data",
            "env": [
                {"name": "PLAIN", "value": "plain-value"},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "gradio"}}},
                {
                    "name": "OPTIONAL",
                    "valueFrom": {"secretKeyRef": {"name": "auth", "key": "absent", "optional": True}},
                },
                {"name": "EXPANDED", "value": "x-$(PLAIN)-$(FROM_SECRET)"},
                {"name": "ESCAPED", "value": "$$(PLAIN)"},
            ],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "auth", "mountPath": "/secrets/auth", "readOnly": True},
            ],
        },
    )
    seen = wait_for(
        lambda: rig.seen(namespace, "identity"),
        timeout=30,
        what="the container's report",
        describe=lambda: rig.describe(namespace, "identity"),
    )
    image = base_image.load()
    assert (seen["uid"], seen["gid"]) == (2000, 3000)
    assert seen["groups"] == [3000, 4000]  # fsGroup as a supplementary group
    assert seen["cwd"] == "/data"
    assert seen["argv"] == ["plain-value", "$(PLAIN)", "$(UNDEFINED)"]
    assert seen["env"] == {
        "PLAIN": "plain-value",
        "FROM_SECRET": "g:p",
        "OPTIONAL": None,
        "EXPANDED": "x-plain-value-g:p",
        "ESCAPED": "$(PLAIN)",
        "HOME": image.env["HOME"],
    }
    # Root-owned, defaultMode, group fsGroup with group read; only the listed item.
    assert seen["secret"] == {"mode": "0o440", "uid": 0, "gid": 4000, "content": "user:pass"}
    assert seen["secret_files"] == ["..data", "api"] or seen["secret_files"][-1] == "api"
    assert seen["write_secret_dir"] == "EROFS"
    assert seen["write_root"] == "EROFS"  # readOnlyRootFilesystem
    assert seen["fill_data_2MiB"] == "ENOSPC"  # the emptyDir is a tmpfs of sizeLimit
    assert (seen["python"], seen["version"], seen["prefix"]) == (PY, [3, 10], "/usr")
    uid, gid = image.uid_gid()
    assert seen["home_owner"] == [uid, gid]
    wait_for(
        lambda: rig.status(namespace, "identity")["phase"] == "Succeeded", timeout=30, what="phase Succeeded"
    )


def test_image_user_and_working_dir_apply_without_a_security_context(rig: Rig, namespace: str) -> None:
    rig.pod(namespace, "image-user", IDENTITY, restartPolicy="Never")
    seen = wait_for(
        lambda: rig.seen(namespace, "image-user"),
        timeout=30,
        what="the container's report",
        describe=lambda: rig.describe(namespace, "image-user"),
    )
    image = base_image.load()
    uid, gid = image.uid_gid()
    assert (seen["uid"], seen["gid"], seen["cwd"]) == (uid, gid, image.workdir)
    assert seen["write_root"] == "EACCES"  # a writable root, but not for the image's non-root user


def test_missing_secret_key_is_create_container_config_error(
    rig: Rig, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "partial"}, "stringData": {"gradio": "g:p"}}
    )
    rig.pod(
        namespace,
        "config-error",
        "print('must not run')",
        container={
            "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "partial", "key": "api"}}}]
        },
    )
    message = f"couldn't find key api in Secret {namespace}/partial"
    waiting = wait_for(
        lambda: (
            (rig.container(namespace, "config-error").get("state") or {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and rig.container(namespace, "config-error")["state"]["waiting"]
        ),
        timeout=30,
        what="CreateContainerConfigError",
    )
    assert waiting["message"] == message
    assert f"Error: {message}" in rig.events(namespace, "config-error", "Failed")
    assert rig.status(namespace, "config-error")["phase"] == "Pending"


def _running_sandbox(rig: Rig, namespace: str, name: str) -> int:
    def sandbox() -> int:
        worker = rig.runner._worker(namespace, name)
        cs = rig.container(namespace, name)
        return worker.sandbox_pid if "running" in (cs.get("state") or {}) else 0

    return wait_for(sandbox, timeout=30, what=f"pod {name} running")


def test_deleted_pod_leaves_no_process_mount_namespace_or_directory(
    rig: Rig, core: client.CoreV1Api, namespace: str
) -> None:
    rig.pod(
        namespace,
        "doomed",
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(3600)",
        volumes=[{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    )
    pid = _running_sandbox(rig, namespace, "doomed")
    pod_netns = os.stat(f"/proc/{pid}/ns/net").st_ino
    assert pod_netns != os.stat("/proc/self/ns/net").st_ino
    assert _our_mounts(rig.host_root) == []
    assert rig.runner.workdir is not None
    pod_dir = rig.runner.workdir / "pods" / core.read_namespaced_pod("doomed", namespace).metadata.uid
    assert pod_dir.is_dir()

    core.delete_namespaced_pod("doomed", namespace)  # the default grace: SIGTERM, then the final delete

    def gone() -> bool:
        try:
            core.read_namespaced_pod("doomed", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for(gone, timeout=30, what="the runner's final delete of the pod")
    assert not Path(f"/proc/{pid}").exists()
    assert _in_netns(pod_netns) == []
    assert _our_mounts(rig.host_root) == []
    assert not pod_dir.exists()


def test_runner_stop_leaves_nothing_behind(
    cluster: LocalCluster, core: client.CoreV1Api, hosts: Path, namespace: str
) -> None:
    rig = Rig(cluster, core, hosts, "podrunner-stop-node")
    rig.runner.start()
    try:
        rig.pod(namespace, "orphan", "import time; time.sleep(3600)")
        pid = _running_sandbox(rig, namespace, "orphan")
        pod_netns = os.stat(f"/proc/{pid}/ns/net").st_ino
        workdir = rig.runner.workdir
        assert workdir is not None
    finally:
        rig.runner.stop()
        core.delete_node(rig.node)
    assert not Path(f"/proc/{pid}").exists()
    assert _in_netns(pod_netns) == []
    assert _our_mounts(rig.host_root) == []
    assert not workdir.exists()
    # Like a stopped kubelet, the runner leaves the pod object; nothing else will finish it.
    core.delete_namespaced_pod("orphan", namespace, grace_period_seconds=0)


def test_failing_liveness_probe_restarts_the_container(rig: Rig, namespace: str) -> None:
    rig.pod(
        namespace,
        "unlive",
        "import time; time.sleep(3600)",  # nothing listens: every liveness probe is refused
        container={
            "livenessProbe": {
                "httpGet": {"path": "/", "port": 8080},
                "periodSeconds": 1,
                "failureThreshold": 2,
            }
        },
    )
    cs = wait_for(
        lambda: (cs := rig.container(namespace, "unlive")).get("restartCount", 0) >= 1 and cs,
        timeout=30,
        what="a restart after the liveness probe failed",
        describe=lambda: rig.describe(namespace, "unlive"),
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGTERM  # stopped with SIGTERM
    assert "Container main failed liveness probe, will be restarted" in rig.events(
        namespace, "unlive", "Killing"
    )
    url = "http://127.0.0.1:8080/"
    refused = f'Liveness probe failed: Get "{url}": dial tcp 127.0.0.1:8080: connect: connection refused'
    assert refused in rig.events(namespace, "unlive", "Unhealthy")


def test_pods_of_a_node_that_goes_away_are_killed(
    cluster: LocalCluster, core: client.CoreV1Api, hosts: Path, namespace: str
) -> None:
    rig = Rig(cluster, core, hosts, "podrunner-gone-node")
    rig.runner.start()
    try:
        rig.pod(namespace, "stranded", "import time; time.sleep(3600)")
        pid = _running_sandbox(rig, namespace, "stranded")
        pod_netns = os.stat(f"/proc/{pid}/ns/net").st_ino
        core.delete_node(rig.node)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="the pod's sandbox to be killed")
        assert _in_netns(pod_netns) == []
        assert _our_mounts(rig.host_root) == []
    finally:
        rig.runner.stop()
    # Like a vanished kubelet, the runner leaves the pod object to the pod garbage collector.
    core.delete_namespaced_pod("stranded", namespace, grace_period_seconds=0)


def test_a_killed_runner_process_leaves_no_process_mount_or_namespace(
    cluster: LocalCluster, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """SIGKILL of the runner: no cleanup code runs, the kernel alone must take every pod process along."""
    node, hosts = "podrunner-crash-node", tmp_path / "hosts"
    cluster.add_gpu_node(node)
    (hosts / node).mkdir(parents=True)
    argv = [sys.executable, "-m", "sdworker_tools.podrunner", f"--kubeconfig={cluster.kubeconfig}"]
    runner = procs.Process("podrunner", [*argv, f"--hosts-dir={hosts}"], tmp_path / "podrunner.log")
    marker = f"marker-{namespace}"
    container = {"name": "main", "image": "x", "command": [PY, "-c", "import time; time.sleep(3600)", marker]}
    try:
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "survivor", "labels": {c.LABEL_SDWORKER: "survivor"}},
                "spec": {"nodeName": node, "automountServiceAccountToken": False, "containers": [container]},
            },
        )
        pid = wait_for(
            lambda: _processes(marker), timeout=30, what="the pod's process", describe=runner.log_tail
        )[0]
        pod_netns = os.stat(f"/proc/{pid}/ns/net").st_ino
        assert pod_netns != os.stat("/proc/self/ns/net").st_ino
    finally:
        runner.kill()
        core.delete_node(node)
        core.delete_namespaced_pod("survivor", namespace, grace_period_seconds=0)
    wait_for(lambda: not _processes(marker), timeout=10, what="the pod's process to die with the runner")
    wait_for(lambda: not _in_netns(pod_netns), timeout=10, what="the pod's network namespace to go")
    assert _our_mounts(hosts) == []
    # Only files are left of its state, and the next runner sweeps them.
    assert [p for p in sweep_stale_workdirs() if p.name.startswith("sdworker-podrunner-")]


def test_service_account_token_volume_is_projected_as_the_kubelet_does(rig: Rig, namespace: str) -> None:
    # No automountServiceAccountToken: false here, so admission adds the kube-api-access projected volume.
    rig.pod(
        namespace,
        "sa",
        """
        import json, os
        d = "/var/run/secrets/kubernetes.io/serviceaccount"
        print(json.dumps({
            "files": sorted(f for f in os.listdir(d) if not f.startswith("..")),
            "namespace": open(f"{d}/namespace").read(),
            "ca": open(f"{d}/ca.crt").read().splitlines()[0],
            "token_parts": len(open(f"{d}/token").read().split(".")),
        }), flush=True)
        """,
        automountServiceAccountToken=True,
        restartPolicy="Never",
    )
    seen = wait_for(
        lambda: rig.seen(namespace, "sa"),
        timeout=30,
        what="the container's report",
        describe=lambda: rig.describe(namespace, "sa"),
    )
    assert seen == {
        "files": ["ca.crt", "namespace", "token"],
        "namespace": namespace,
        "ca": "-----BEGIN CERTIFICATE-----",
        "token_parts": 3,  # a JWT from the TokenRequest API
    }
