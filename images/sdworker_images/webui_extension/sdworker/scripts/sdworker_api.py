"""sdworker's always-on webui extension: readiness that means "model loaded", and API credentials from a file.

webui (v1.10.1) loads the checkpoint in a background thread (modules/initialize.py), answers /internal/ping
and /sdapi/v1/sd-models before and after a failed load, guards /sdapi/* only with ``--api-auth`` on its
command line (modules/api/api.py Api.__init__), and blocks any request that reads ``shared.sd_model``
while a load runs (modules/sd_models.py SdModelData.get_sd_model). This extension, registered with
``script_callbacks.on_app_started`` (fired with the FastAPI app also under --nowebui), adds:

* ``GET /sdworker/ready``: 200 ``{"model": title}`` once ``sd_models.model_data.sd_model`` is set, else
  503 ``{"reason": "ModelLoading" | "ModelLoadFailed", "message": ...}``. It never reads
  ``shared.sd_model``, which would start a load.
* an ASGI middleware: /sdapi/*, /internal/* (but /internal/ping) and /sdworker/* (but /sdworker/ready) need
  HTTP Basic credentials matching a ``user:password`` line of the file named by $SDWORKER_API_AUTH_FILE
  (a path, so the credentials are never in argv or the environment, which /internal/sysinfo publishes).
  A configured file that cannot be read denies those routes with 503 (logged without its content).
  Generation and settings changes answer 503 at once while the model is not loaded, instead of hanging.

It runs on webui's Python (3.10) and imports only what webui provides: its ``modules``, starlette, stdlib.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modules import script_callbacks, sd_models
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTH_FILE_ENV = "SDWORKER_API_AUTH_FILE"
READY_PATH = "/sdworker/ready"
PING_PATH = "/internal/ping"
PROTECTED_PREFIXES = ("/sdapi/", "/internal/", "/sdworker/")
UNPROTECTED = frozenset({PING_PATH, READY_PATH})
# Routes that read shared.sd_model (and so block on a load) or reload it: modules/api/api.py.
NEEDS_MODEL = frozenset(
    {
        "/sdapi/v1/txt2img",
        "/sdapi/v1/img2img",
        "/sdapi/v1/options",
        "/sdapi/v1/reload-checkpoint",
        "/sdapi/v1/interrogate",
        "/sdapi/v1/create/embedding",
        "/sdapi/v1/create/hypernetwork",
        "/sdapi/v1/train/embedding",
        "/sdapi/v1/train/hypernetwork",
    }
)
OPTIONS_PATH = "/sdapi/v1/options"
# Settings that would switch this extension off at the next start (modules/extensions.py list_extensions
# honours them for extensions-builtin too): refused on the API. Were the extension ever off, readiness
# (/sdworker/ready, served by it) fails and the pod leaves the Service: the API is never served open.
EXTENSION_NAME = "sdworker"
MAX_OPTIONS_BODY = 1 << 20
LOAD_THREAD_SUFFIX = "(load_model)"  # Python >= 3.10 names a Thread after its target: "Thread-3 (load_model)"


def log(message: str) -> None:
    print(f"[sdworker] {message}", file=sys.stderr, flush=True)


def model_status() -> tuple[int, dict[str, str]]:
    """The readiness answer, from sd_models.model_data without triggering a load."""
    data = sd_models.model_data
    model = data.sd_model
    if model is not None:
        info = getattr(model, "sd_checkpoint_info", None)
        return 200, {"model": str(getattr(info, "title", "") or getattr(model, "sd_model_checkpoint", ""))}
    loading = data.lock.locked() or any(
        t.is_alive() and t.name.endswith(LOAD_THREAD_SUFFIX) for t in threading.enumerate()
    )
    if loading:
        return 503, {"reason": "ModelLoading", "message": "the checkpoint is being loaded"}
    return 503, {
        "reason": "ModelLoadFailed",
        "message": "the checkpoint is not loaded and no load is running; see the webui log "
        "('Stable diffusion model failed to load')",
    }


def read_credentials(path: str) -> list[tuple[str, str]]:
    """``user:password`` lines (blank lines skipped); raises OSError if the file cannot be read."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    pairs = []
    for line in lines:
        user, sep, password = line.strip().partition(":")
        if sep:
            pairs.append((user, password))
    return pairs


def basic_credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, encoded = value.decode("latin-1").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            return (user, password) if sep else None
    return None


def allowed(given: tuple[str, str] | None, known: list[tuple[str, str]]) -> bool:
    if given is None:
        return False
    user, password = given[0].encode(), given[1].encode()
    ok = False
    for k_user, k_password in known:  # every entry is compared, so timing does not tell which matched
        ok |= hmac.compare_digest(user, k_user.encode()) & hmac.compare_digest(password, k_password.encode())
    return ok


def forbidden_option(body: bytes) -> str | None:
    """The name of a setting in an options POST that would disable this extension, or None."""
    try:
        options = json.loads(body or b"{}")
    except ValueError:
        return None  # webui answers 422 itself
    if not isinstance(options, dict):
        return None
    if options.get("disable_all_extensions", "none") != "none":
        return "disable_all_extensions"
    disabled = options.get("disabled_extensions")
    if isinstance(disabled, list) and EXTENSION_NAME in disabled:
        return "disabled_extensions"
    return None


async def read_body(receive: Receive, limit: int) -> tuple[bytes, list[Message]] | None:
    """The whole request body and the messages that carried it, or None past ``limit`` bytes."""
    chunks, messages, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again


async def send_json(
    send: Send, status: int, body: dict[str, str], headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class SdworkerMiddleware:
    """Credentials for the API and the 503-fast rule for routes that need the model (pure ASGI)."""

    def __init__(self, app: ASGIApp, auth_file: str | None) -> None:
        self.app = app
        self.auth_file = auth_file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIXES) or path in UNPROTECTED:
            await self.app(scope, receive, send)
            return
        if self.auth_file is not None:
            try:
                known = read_credentials(self.auth_file)
            except OSError as e:
                log(f"cannot read ${AUTH_FILE_ENV} ({self.auth_file}): {type(e).__name__}; denying the API")
                body = {"reason": "AuthUnavailable", "message": "the API credentials file cannot be read"}
                await send_json(send, 503, body, [])
                return
            if not allowed(basic_credentials(scope.get("headers", [])), known):
                body = {"detail": "Not authenticated"}
                await send_json(send, 401, body, [(b"www-authenticate", b'Basic realm="sdworker"')])
                return
        if path == OPTIONS_PATH and scope.get("method") == "POST":
            read = await read_body(receive, MAX_OPTIONS_BODY)
            if read is None:
                await send_json(send, 413, {"reason": "TooLarge", "message": "options body too large"}, [])
                return
            payload, messages = read
            name = forbidden_option(payload)
            if name is not None:
                message = f"{name} would switch off the sdworker extension (API credentials, readiness)"
                await send_json(send, 403, {"reason": "ForbiddenOption", "message": message}, [])
                return
            receive = replay(messages, receive)
        if path in NEEDS_MODEL and scope.get("method") == "POST":
            status, ready = model_status()
            if status != 200:
                await send_json(send, 503, ready, [(b"retry-after", b"5")])
                return
        await self.app(scope, receive, send)


def ready() -> JSONResponse:
    """GET /sdworker/ready."""
    status, body = model_status()
    return JSONResponse(body, status_code=status)


def on_app_started(demo: Any, app: Any) -> None:
    """Install the route and the middleware on webui's FastAPI app (also under --nowebui, demo None).

    starlette 0.26.1 (webui's fastapi 0.94.0) refuses add_middleware() once the stack is built, and the UI
    is already serving when app_started fires; so reset and rebuild the stack like webui's own
    modules/initialize_util.py setup_middleware() does.
    """
    auth_file = os.environ.get(AUTH_FILE_ENV) or None
    if auth_file is None:
        log(f"${AUTH_FILE_ENV} is not set: the API is not guarded by sdworker")
    app.add_api_route(READY_PATH, ready, methods=["GET"])
    app.middleware_stack = None
    app.add_middleware(SdworkerMiddleware, auth_file=auth_file)
    app.middleware_stack = app.build_middleware_stack()
    log("installed /sdworker/ready and the API middleware")


script_callbacks.on_app_started(on_app_started)
