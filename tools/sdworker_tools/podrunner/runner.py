"""The pod runner: the kubelet's part for SD pods on kwok nodes, with start()/stop() like LocalCluster.

kwok fakes every other pod; its pod stages (tools/testcluster/stages/) skip pods labelled
``sdworker.dev/sdworker``, and this runner takes exactly those: every ``poll_interval`` it lists them with
the nodes, gives each pod bound to a kwok node a ``PodWorker`` (kubelet.py) with that node's host root, and
ends the workers of pods that vanished or whose node went away. It also emulates the base image the pods
name (parsed from images/Dockerfile.base, with a host Python 3.10 at the image's interpreter path) and
offers ``forward()`` (kubectl port-forward) and ``logs()`` (kubectl logs). It needs root.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from sdworker.api import constants as c
from sdworker_tools.podrunner import image as img
from sdworker_tools.podrunner.events import delete_pod
from sdworker_tools.podrunner.kubelet import Node, PodWorker
from sdworker_tools.podrunner.netns import PortForward

Json = dict[str, Any]
PYTHON_ENV = "SDWORKER_PYTHON310"
PYTHON_GLOB = "/root/.pyenv/versions/3.10.*/bin/python3.10"
WORKDIR_PREFIX = "sdworker-podrunner-"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SELECTOR = c.LABEL_SDWORKER  # every pod with this label is ours (kwok's stages skip exactly these)


class PodRunnerError(RuntimeError):
    pass


def find_python(configured: Path | None = None) -> Path:
    """A CPython 3.10 interpreter on this host to play the base image's, or a clear error."""
    candidates = [str(configured)] if configured else []
    if os.environ.get(PYTHON_ENV):
        candidates.append(os.environ[PYTHON_ENV])
    candidates += [*sorted(glob.glob(PYTHON_GLOB), reverse=True), "/usr/bin/python3.10"]
    for candidate in candidates:
        path = Path(candidate)
        if (
            path.is_file()
            and os.access(path, os.X_OK)
            and (path.parent.parent / "lib" / "python3.10").is_dir()
        ):
            return path
    raise PodRunnerError(
        f"no Python 3.10 to emulate the base image's interpreter: tried {candidates}; install one "
        f"(e.g. pyenv install 3.10) or point ${PYTHON_ENV} or PodRunner(python310=...) at it"
    )


def base_image_files(image: img.BaseImage, python: Path) -> Json:
    """What the sandbox adds to the host's / to make the base image: the interpreter at the image's path
    (Ubuntu's layout: /usr/bin/python3.10, its standard library at /usr/lib/python3.10, libpython in
    /usr/lib), the image's logins and home, and its WORKDIR."""
    target_bin = Path(image.python)
    usr = target_bin.parent.parent
    home = python.parent.parent
    binds = [
        (str(python.resolve()), str(target_bin)),
        (str(home / "lib" / "python3.10"), str(usr / "lib" / "python3.10")),
    ]
    files, dirs = [str(target_bin)], [str(usr / "lib" / "python3.10")]
    for lib in sorted((home / "lib").glob("libpython3.10*.so.1.0")):
        binds.append((str(lib), str(usr / "lib" / lib.name)))
        files.append(str(usr / "lib" / lib.name))
    if python.resolve() == target_bin:  # the host already has the image's interpreter
        binds, files, dirs = [], [], []
    return {
        "python_binds": binds,
        "python_files": files,
        "python_dirs": dirs,
        "logins": [vars(login) for login in image.logins],
        "workdir": image.workdir,
    }


def sweep_stale_workdirs(parent: Path = Path("/run")) -> list[Path]:
    """Remove the state of runners that died without stopping (SIGKILL): only files are left of it,
    since every process and mount of their pods died with them."""
    removed = []
    for stale in parent.glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((stale / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


class PodRunner:
    """Run the SD pods of the cluster at ``kubeconfig`` on kwok nodes whose host root is known.

    ``hosts_dir``: node ``N`` is run here if ``hosts_dir/N`` is a directory, and that is its host root (the
    demo's and the agent tests' layout); or ``host_root``: a function from node name to its host root,
    ``None`` for a node not run here.
    """

    def __init__(
        self,
        kubeconfig: Path,
        *,
        hosts_dir: Path | None = None,
        host_root: Callable[[str], Path | None] | None = None,
        python310: Path | None = None,
        dockerfile: Path = img.DOCKERFILE,
        backoff_initial: float = 10.0,
        backoff_cap: float = 300.0,
        mount_retry_cap: float = 122.0,
        poll_interval: float = 0.5,
        log: Callable[[str], None] = print,
    ) -> None:
        if (hosts_dir is None) == (host_root is None):
            raise ValueError("PodRunner needs exactly one of hosts_dir and host_root")
        self.kubeconfig = kubeconfig

        def in_hosts_dir(node: str) -> Path | None:
            root = hosts_dir / node if hosts_dir is not None else None
            return root if root is not None and root.is_dir() else None

        self._host_root = host_root or in_hosts_dir
        self.python310 = python310
        self.dockerfile = dockerfile
        self.backoff = (backoff_initial, backoff_cap)
        self.mount_retry_cap = mount_retry_cap
        self.poll_interval = poll_interval
        self.log = log
        self.workdir: Path | None = None
        self._workers: dict[str, PodWorker] = {}
        self._forwards: dict[str, list[PortForward]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._api: client.ApiClient | None = None

    def __enter__(self) -> PodRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise PodRunnerError("the pod runner needs root (namespaces, mounts, setuid)")
        for tool in ("unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise PodRunnerError(f"the pod runner needs {tool} (util-linux) on PATH")
        image = img.load(self.dockerfile)
        # LD_PRELOAD names tcmalloc, which the host lacks; every process would print a loader warning.
        image.env.pop("LD_PRELOAD", None)
        self._image = image
        self._image_files = base_image_files(image, find_python(self.python310))
        # Under /run, not /tmp: pods see an empty /tmp of their own, and /run is hidden from them too.
        parent = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
        sweep_stale_workdirs(parent)
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=parent))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._core = client.CoreV1Api(self._api)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="podrunner", daemon=True)
        self._thread.start()
        self.log(f"[podrunner] running SD pods on kwok nodes; state in {self.workdir}")

    def stop(self) -> None:
        """Kill every pod's processes (their mounts and namespaces go with them) and remove all state."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
            forwards = [f for fs in self._forwards.values() for f in fs]
            self._forwards.clear()
        for forward in forwards:
            forward.close()
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.join(60)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self._api is not None:
            self._api.close()
            self._api = None

    # --- for tests and the demo ---------------------------------------------------------------------

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        with self._lock:
            for worker in self._workers.values():
                meta = worker.pod["metadata"]
                if meta["namespace"] == namespace and meta["name"] == pod:
                    return worker
        raise PodRunnerError(f"pod {namespace}/{pod} is not run by this pod runner")

    def forward(self, namespace: str, pod: str, port: int) -> int:
        """Listen on 127.0.0.1 and pipe each connection to ``port`` inside the pod; return the host port."""
        worker = self._worker(namespace, pod)
        if not worker.sandbox_pid:
            raise PodRunnerError(f"pod {namespace}/{pod} has no sandbox yet")
        forward = PortForward(worker.netns, port)
        with self._lock:
            self._forwards.setdefault(worker.uid, []).append(forward)
        return forward.host_port

    def logs(self, namespace: str, pod: str, container: str | None = None, *, previous: bool = False) -> str:
        """A container's output (the current run, or the one before with ``previous``)."""
        worker = self._worker(namespace, pod)
        name = container or worker.pod["spec"]["containers"][0]["name"]
        paths = worker.log_paths(name)
        index = -2 if previous else -1
        if len(paths) < abs(index):
            return ""
        try:
            return paths[index].read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pod_pids(self) -> list[int]:
        """The sandbox process of every pod now run (for leak checks)."""
        with self._lock:
            return [w.sandbox_pid for w in self._workers.values() if w.sandbox_pid]

    # --- the loop ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reconcile()
            except Exception as exc:  # the apiserver may be restarting (ApiException, urllib3): retry
                self.log(f"[podrunner] list failed: {type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_interval)

    def _nodes(self) -> dict[str, tuple[Path, str]]:
        nodes = {}
        key, value = KWOK_NODE_ANNOTATION
        for node in self._core.list_node().items:
            if (node.metadata.annotations or {}).get(key) != value:
                continue
            root = self._host_root(node.metadata.name)
            if root is None:
                continue
            ips = [a.address for a in (node.status.addresses or []) if a.type == "InternalIP"]
            nodes[node.metadata.name] = (root, ips[0] if ips else "")
        return nodes

    def _reconcile(self) -> None:
        assert self._api is not None
        nodes = self._nodes()
        pods = self._core.list_pod_for_all_namespaces(label_selector=SELECTOR).items
        seen = set()
        for pod_obj in pods:
            pod: Json = self._api.sanitize_for_serialization(pod_obj)
            node = pod["spec"].get("nodeName")
            if node not in nodes:
                continue
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self._lock:
                worker = self._workers.get(uid)
            if worker is None:
                if pod["metadata"].get("deletionTimestamp") is not None:
                    delete_pod(self._core, pod)  # deleted before it ran here: only the final delete is left
                    continue
                root, ip = nodes[node]
                worker = PodWorker(
                    Node(
                        self._core,
                        node,
                        root,
                        ip,
                        self._image,
                        self._image_files,
                        self._workdir_path(),
                        *self.backoff,
                        self.mount_retry_cap,
                    ),
                    pod,
                )
                with self._lock:
                    self._workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        with self._lock:
            items = list(self._workers.items())
        for uid, worker in items:
            if uid not in seen:
                worker.kill()  # force-deleted, or its node is gone: the processes go at once
            if worker.finished.is_set():
                with self._lock:
                    self._workers.pop(uid, None)
                    forwards = self._forwards.pop(uid, [])
                for forward in forwards:
                    forward.close()

    def _workdir_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir
