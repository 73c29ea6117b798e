"""Reaching into a pod's network namespace from the runner: HTTP probes and a port-forward.

A socket belongs to the network namespace of the thread that created it, for its whole life. So a
short-lived thread ``setns()``es into the pod's namespace (``/proc/<pause pid>/ns/net``), creates the socket
and ends; the caller then uses the socket from any thread, and the runner's own threads never change
namespace. Probes behave as the kubelet's prober (pkg/probe/http/http.go, ``DoHTTPProbe``): a GET with
``User-Agent: kube-probe/<major.minor>`` and ``Accept: */*``, success for a status in [200, 400), and the
failure texts the kubelet records in its ``Unhealthy`` events.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import socket
import threading
from pathlib import Path

from sdworker_tools.podrunner.spec import Probe

CLONE_NEWNET = 0x40000000
KUBE_PROBE_AGENT = "kube-probe/1.36"
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(netns: Path) -> socket.socket:
    """A new TCP socket in the network namespace at ``netns`` (e.g. ``/proc/PID/ns/net``)."""
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=create, name="netns-socket")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: Path, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        sock = socket_in(self._netns)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_probe(netns: Path, probe: Probe) -> tuple[bool, str]:
    """(success, failure message as the kubelet words it)."""
    url = f"http://{probe.host}:{probe.port}{probe.path}"
    if probe.scheme.upper() != "HTTP":
        return False, f"probe scheme {probe.scheme} is not supported by the pod runner"
    conn = _NetnsHTTPConnection(netns, probe.host, probe.port, probe.timeout)
    try:
        headers = {"User-Agent": KUBE_PROBE_AGENT, "Accept": "*/*", **dict(probe.headers)}
        conn.request("GET", probe.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(10 * 1024)
        if 200 <= resp.status < 400:
            return True, ""
        del body
        return False, f"HTTP probe failed with statuscode: {resp.status}"
    except TimeoutError:
        return False, (
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        )
    except OSError as exc:
        reason = {
            111: "connect: connection refused",
            101: "connect: network is unreachable",
            104: "read: connection reset by peer",
        }.get(exc.errno or 0, str(exc))
        return False, f'Get "{url}": dial tcp {probe.host}:{probe.port}: {reason}'
    except http.client.HTTPException as exc:
        return False, f'Get "{url}": {type(exc).__name__}: {exc}'
    finally:
        conn.close()


class PortForward:
    """127.0.0.1:<host port> on the host, piped to 127.0.0.1:<port> inside the pod (kubectl port-forward)."""

    def __init__(self, netns: Path, port: int) -> None:
        self.netns = netns
        self.port = port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.host_port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"port-forward-{port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket_in(self.netns)
            except OSError:
                client.close()
                continue
            try:
                upstream.connect(("127.0.0.1", self.port))
            except OSError:
                upstream.close()
                client.close()  # as kubectl port-forward: the connection is dropped
                continue
            with self._lock:
                self._conns.update((client, upstream))
            done = threading.Semaphore(0)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
        """Copy one direction; the second direction to finish closes both sockets."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        if done.acquire(blocking=False):
            with self._lock:
                for sock in (src, dst):
                    self._conns.discard(sock)
                    sock.close()
        else:
            done.release()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()
        self._thread.join(5)
