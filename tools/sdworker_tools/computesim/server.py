"""The HTTP face of the simulator, and ``ComputeSim``, the object tests start and stop.

Routes ``/compute/v1/projects/...`` to the engine's API methods, ``/batch/compute/v1`` (gcloud
sends several requests in one multipart batch when a command names several resources) to the
same methods, and ``/_sim/...`` to the admin API (inventory, logs, knobs, faults, images and
instances made at once, image holds). Binds 127.0.0.1 only. Each request runs in its own thread (an
operation ``wait`` blocks its caller, not the server); ``stop`` closes kept-alive connections
too, so no handler thread outlives the simulator.

Owns the state directory: a fresh temporary one by default (removed on stop), or the one given,
where files left by a killed earlier run are swept first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from sdworker_tools.computesim import blockdev, errors
from sdworker_tools.computesim.config import FaultRule, SimConfig
from sdworker_tools.computesim.engine import Engine
from sdworker_tools.computesim.errors import ApiError
from sdworker_tools.computesim.links import API_PREFIX, Links
from sdworker_tools.computesim.routes import BATCH_PATH, route

log = logging.getLogger(__name__)

STATE_PREFIX = "sdworker-computesim-"
_OWNER_FILE = "owner.pid"

Response = tuple[int, dict[str, Any]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: ComputeSim) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the clients pool connections
    timeout = 60  # an idle kept-alive connection ends, so its thread does
    # One segment per answer, sent at once: headers and body written separately meet the
    # client's delayed ACK under Nagle and cost ~40 ms per call.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("computesim: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, verb: str) -> None:
        raw = self._read_body()
        split = urllib.parse.urlsplit(self.path)
        sim = self.server.sim
        try:
            if split.path == BATCH_PATH and verb == "POST":
                try:
                    content_type, payload = sim.handle_batch(self.headers.get("Content-Type", ""), raw)
                except (ApiError, ValueError, UnicodeDecodeError) as exc:
                    # A 4xx, not a 5xx: gcloud retries a failed batch for minutes on 5xx.
                    error = (
                        exc if isinstance(exc, ApiError) else ApiError(400, "invalid", f"bad batch: {exc}")
                    )
                    self._send(
                        error.code, json.dumps(error.body()).encode(), "application/json; charset=UTF-8"
                    )
                    return
                self._send(200, payload, content_type)
                return
            status, body = sim.handle(verb, split.path, split.query, raw)
        except Exception:
            log.exception("computesim: %s %s", verb, self.path)
            status, body = 500, errors.backend_error(500).body()
        self._send(status, json.dumps(body).encode(), "application/json; charset=UTF-8")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _query(query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "parseError", f"Invalid JSON payload received. {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Invalid JSON payload received. Expected an object.")
    return body


def _split_head(data: bytes) -> tuple[str, str, bytes]:
    """(headers, separator, rest) at the first blank line, CRLF or LF."""
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        return data.decode("latin-1"), "", b""
    return data[: match.start()].decode("latin-1"), "\n\n", data[match.end() :]


def _live_owner(state_dir: Path) -> int | None:
    """The pid in ``owner.pid`` if that process is alive (this one included: two simulators in one
    process must not share a directory either)."""
    try:
        owner = int((state_dir / _OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if Path(f"/proc/{owner}").exists() else None


def _mark_owner(state_dir: Path) -> None:
    (state_dir / _OWNER_FILE).write_text(str(os.getpid()))


def sweep_stale_state_dirs(parent: Path | None = None) -> list[Path]:
    """Release what simulators killed without cleanup left in temporary state directories."""
    removed = []
    for state_dir in Path(parent or tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        if (state_dir / _OWNER_FILE).is_file() and _live_owner(state_dir) is None:
            blockdev.sweep(state_dir)
            shutil.rmtree(state_dir, ignore_errors=True)
            removed.append(state_dir)
    return removed


class ComputeSim:
    """The compute API simulator: ``with ComputeSim(SimConfig(...)) as sim: ...``.

    ``sim.endpoint`` is what ``client_options={"api_endpoint": ...}`` takes; ``sim.api_base`` is
    what gcloud's ``api_endpoint_overrides/compute`` takes.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._own_state_dir = False
        self.state_dir = Path()
        self.dev_base = Path()
        self.port = 0
        self.url = ""  # http://127.0.0.1:PORT once started

    # -------------------------------------------------------------- lifecycle

    def start(self) -> ComputeSim:
        if self._server is not None:
            raise RuntimeError("already started")
        sweep_stale_state_dirs()
        if self.config.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=STATE_PREFIX)).resolve()
            self._own_state_dir = True
        else:
            self.state_dir = self.config.state_dir.resolve()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            owner = _live_owner(self.state_dir)
            if owner is not None:
                # Sweeping would detach another running simulator's devices from under it.
                self.state_dir = Path()
                raise RuntimeError(f"state directory {self.config.state_dir} is in use by process {owner}")
            blockdev.sweep(self.state_dir)
            for leftover in ("images", "disks"):
                blockdev.remove_tree(self.state_dir / leftover)
        _mark_owner(self.state_dir)
        self.dev_base = (self.config.dev_base or self.state_dir / "nodes").resolve()
        self.dev_base.mkdir(parents=True, exist_ok=True)
        try:
            self._server = _Server((self.config.host, self.config.port), self)
            port = self._server.server_address[1]
            self.port = int(port)
            self.url = f"http://{self.config.host}:{self.port}"
            links = Links(self.config.link_base or self.api_base)
            self._engine = Engine(self.config, links, self.state_dir, self.dev_base)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="computesim-http",
                daemon=True,
            )
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, finish or drop operations, release every loop device and file. Idempotent."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=10)
            self._server.server_close()
        if self._engine is not None:
            self._engine.close()  # wakes blocked waits before their connections are closed
        if self._server is not None:
            self._server.close_connections()
        self._server = None
        self._thread = None
        self._engine = None
        if self.state_dir != Path():
            if self._own_state_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            else:
                for owned in ("images", "disks", _OWNER_FILE):
                    target = self.state_dir / owned
                    if target.is_dir():
                        blockdev.remove_tree(target)
                    else:
                        blockdev.remove_file(target)
            self.state_dir = Path()

    def __enter__(self) -> ComputeSim:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the google-cloud-compute ``api_endpoint``."""
        return self.url

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/compute/v1/``: gcloud's ``api_endpoint_overrides/compute``."""
        return self.url + API_PREFIX

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the simulator is not running")
        return self._engine

    # -------------------------------------------------------------- request handling

    def handle(self, verb: str, path: str, query: str, raw: bytes) -> Response:
        if path.startswith("/_sim/") or path == "/_sim":
            return self._admin(verb, path, _query(query), raw)
        try:
            method, params = route(verb, path)
            body = _json_body(raw) if verb in ("POST", "PATCH") else None
            return 200, self.engine.call(method, path, params, _query(query), body)
        except ApiError as exc:
            return exc.code, exc.body()

    def handle_batch(self, content_type: str, raw: bytes) -> tuple[str, bytes]:
        """A multipart/mixed batch (the Google API batch protocol), each part answered in turn.

        gcloud sends one when a command names several resources; its parts separate lines with
        a bare LF, so both line endings are accepted.
        """
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if match is None:
            raise ApiError(400, "invalid", "batch request without a multipart boundary")
        boundary = match.group(1)
        delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode()))
        answers = []
        for part in delimiter.split(raw)[1:]:
            if part.startswith(b"--"):
                break
            outer_headers, _, inner = _split_head(part.lstrip(b"\r\n"))
            content_id = ""
            for line in outer_headers.splitlines():
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-id":
                    content_id = value.strip().strip("<>")
            request_head, _, body = _split_head(inner)
            words = request_head.splitlines()[0].split() if request_head.strip() else []
            if len(words) < 2:
                raise ApiError(400, "invalid", "batch part without a request line")
            split = urllib.parse.urlsplit(words[1])
            status, answer = self.handle(words[0], split.path, split.query, body.strip())
            payload = json.dumps(answer)
            answers.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n"
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "Content-Type: application/json; charset=UTF-8\r\n"
                f"Content-Length: {len(payload.encode())}\r\n\r\n"
                f"{payload}\r\n"
            )
        text = "".join(answers) + f"--{boundary}--\r\n"
        return f"multipart/mixed; boundary={boundary}", text.encode()

    def _admin(self, verb: str, path: str, query: Mapping[str, str], raw: bytes) -> Response:
        admin: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "/_sim/health"): lambda _: {"ok": True},
            ("GET", "/_sim/inventory"): lambda _: self.inventory(),
            ("GET", "/_sim/operations"): lambda _: {
                "operations": self.operations(int(query.get("since", 0)))
            },
            ("GET", "/_sim/requests"): lambda _: {"requests": self.requests(int(query.get("since", 0)))},
            ("GET", "/_sim/config"): lambda _: self.engine.config.runtime_view(),
            ("POST", "/_sim/config"): self.configure_from_json,
            ("GET", "/_sim/faults"): lambda _: {"faults": self.engine.faults()},
            ("POST", "/_sim/faults"): self._add_faults_from_json,
            ("DELETE", "/_sim/faults"): self._clear_faults_from_json,
            ("POST", "/_sim/images"): self._register_image_from_json,
            ("POST", "/_sim/images/hold"): self._hold_image_from_json,
            ("POST", "/_sim/images/release"): self._release_image_from_json,
            ("POST", "/_sim/instances"): self._create_instance_from_json,
        }
        handler = admin.get((verb, path.rstrip("/")))
        if handler is None:
            return 404, errors.not_found(path).body()
        try:
            return 200, handler(_json_body(raw))
        except ApiError as exc:
            return exc.code, exc.body()
        except (ValueError, TypeError, KeyError) as exc:
            return 400, errors.invalid(f"{type(exc).__name__}: {exc}").body()

    def configure_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.configure(**body)

    def _add_faults_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        rules = body.get("faults", [body])
        self.add_faults(*(FaultRule(**rule) for rule in rules))
        return {"faults": self.engine.faults()}

    def _clear_faults_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        self.clear_faults()
        return {"faults": []}

    def _register_image_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.register_image(
            body["name"],
            Path(body["file"]) if body.get("file") else None,
            project=body.get("project", "sim-project"),
            family=body.get("family"),
            labels=body.get("labels"),
            disk_size_gb=body.get("diskSizeGb"),
            description=body.get("description", ""),
            deprecated=body.get("deprecated"),
        )

    def _create_instance_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.create_instance(
            body["name"],
            zone=body["zone"],
            project=body.get("project", "sim-project"),
            machine_type=body.get("machineType", "n1-standard-4"),
            labels=body.get("labels"),
        )

    def _hold_image_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.hold_image(
            body["name"], project=body.get("project", "sim-project"), zones=body.get("zones", ())
        )

    def _release_image_from_json(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.release_image(body["name"], project=body.get("project", "sim-project"))

    # -------------------------------------------------------------- the in-process admin API

    def register_image(self, name: str, file: Path | None, **options: Any) -> dict[str, Any]:
        """Register an image READY at once from a local ext4 file (or a GCE ``.tar.gz``); ``options``:
        project, family, labels, disk_size_gb, description, deprecated (``AdminHandlers.register_image``)."""
        return self.engine.register_image(name, file, **options)

    def create_instance(self, name: str, **options: Any) -> dict[str, Any]:
        """An instance RUNNING at once, without quota or latency (test set-up); ``options``: zone (required),
        project, machine_type, labels (``AdminHandlers.create_instance``)."""
        return self.engine.create_instance(name, **options)

    def hold_image(self, name: str, **options: Any) -> dict[str, Any]:
        """Keep an image not ready (in ``zones``, or everywhere) until ``release_image``
        (``AdminHandlers.hold_image``): ``disks.insert`` from it answers 400 ``resourceNotReady``."""
        return self.engine.hold_image(name, **options)

    def release_image(self, name: str, **options: Any) -> dict[str, Any]:
        return self.engine.release_image(name, **options)

    def dev_root(self, instance: str) -> Path:
        """The instance's ``/dev``: its disks appear under ``disk/by-id/google-<deviceName>``."""
        return self.engine.dev_root(instance)

    def inventory(self) -> dict[str, Any]:
        return self.engine.inventory()

    def operations(self, since: int = 0) -> list[dict[str, Any]]:
        return self.engine.operation_log(since)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.engine.request_log(since)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change run-time knobs (see ``config.RUNTIME_FIELDS``); returns the new values."""
        return self.engine.configure(changes)

    def add_faults(self, *rules: FaultRule) -> None:
        self.engine.add_faults(list(rules))

    def clear_faults(self) -> None:
        self.engine.clear_faults()
