"""webui v1.10.1 modules/ui.py (create_ui, setup_ui_api), ui_gradio_extensions.py, ui_loadsave.py,
sysinfo.py, and the part of gradio 3.41.2 that decides whether the UI works: the App's login and its
``/file=`` route (gradio/routes.py App.create_app: ``file()``), served by uvicorn in a thread like
gradio's Blocks.launch() (gradio/networking.py Server.run_in_thread).
"""

import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from modules.paths_internal import cwd, data_path, extensions_dir, script_path


def truncate_path(target_path: str, base_path: str = cwd) -> str:
    """util.truncate_path(): relative to the cwd when under it, else absolute."""
    abs_target, abs_base = os.path.abspath(target_path), os.path.abspath(base_path)
    if os.path.commonpath([abs_target, abs_base]) == abs_base:
        return os.path.relpath(abs_target, abs_base)
    return abs_target


def webpath(fn: str) -> str:
    """ui_gradio_extensions.webpath(): ``file=<truncate_path(fn)>?<mtime>``."""
    return f"file={truncate_path(fn)}?{os.path.getmtime(fn)}"


def assets() -> list[str]:
    """ui_gradio_extensions.javascript_html()/css_html(): script.js, javascript/*.js, style.css."""
    js = [os.path.join(script_path, "script.js")]
    js_dir = os.path.join(script_path, "javascript")
    js += [os.path.join(js_dir, f) for f in sorted(os.listdir(js_dir)) if f.endswith(".js")]
    return [*js, os.path.join(script_path, "style.css")]


def is_in_or_equal(path_1: Path, path_2: Path) -> bool:
    """gradio/utils.py is_in_or_equal()."""
    try:
        return not str(abspath(path_1).relative_to(abspath(path_2))).startswith("..")
    except ValueError:
        return False


def abspath(path: str | Path) -> Path:
    """gradio/utils.py abspath(): relative paths are taken against the cwd, symlinks not resolved."""
    path = Path(path)
    if path.is_absolute():
        return path
    is_symlink = path.is_symlink() or any(p.is_symlink() for p in path.parents)
    return Path.cwd() / path if is_symlink or path == path.resolve() else path.resolve()


class Blocks:
    """The gradio Blocks webui builds (ui.create_ui) and launches (gradio Blocks.launch)."""

    def __init__(self) -> None:
        self.server_thread: threading.Thread | None = None
        self.allowed_paths: list[str] = []
        self.blocked_paths: list[str] = []

    def launch(
        self, *, server_name: str | None, server_port: int | None, auth: Any, allowed_paths: list[str]
    ):
        """Blocks.launch(prevent_thread_lock=True): build the App, serve it from a thread, return the app."""
        import uvicorn

        self.allowed_paths = list(allowed_paths or [])
        app = create_app(self, auth)
        config = uvicorn.Config(
            app, host=server_name or "127.0.0.1", port=server_port or 7860, log_level="warning"
        )
        server = uvicorn.Server(config)
        self.server_thread = threading.Thread(target=server.run, daemon=True)
        self.server_thread.start()
        while not server.started and self.server_thread.is_alive():
            time.sleep(0.05)
        if not server.started:
            raise OSError(f"Cannot serve on port {server_port or 7860}")
        print(f"Running on local URL:  http://{server_name or '127.0.0.1'}:{server_port or 7860}", flush=True)
        return app


def create_app(blocks: Blocks, auth: Any) -> FastAPI:
    """gradio/routes.py App.__init__ + App.create_app(): login, index and the ``file=`` route."""
    app = FastAPI(docs_url="/docs", redoc_url="/redoc")
    app.cwd = os.getcwd()  # gradio App.create_app: ``app.cwd = os.getcwd()``
    # App.__init__: GRADIO_TEMP_DIR, else tempfile.gettempdir()/gradio; gettempdir() raises
    # FileNotFoundError when no candidate (TMPDIR, /tmp, /var/tmp, cwd) is writable.
    app.uploaded_file_dir = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    app.auth = dict(auth) if auth else None
    app.tokens = {}

    def get_current_user(request: Request) -> str | None:
        return app.tokens.get(request.cookies.get("access-token-unsecure"))

    def login_check(user: str | None = Depends(get_current_user)) -> None:
        if app.auth is None or user is not None:
            return
        raise HTTPException(status_code=401, detail="Not authenticated")

    @app.post("/login")
    async def login(request: Request) -> Any:
        """routes.login(): gradio reads the form with python-multipart; a urlencoded body is parsed here."""
        form = urllib.parse.parse_qs((await request.body()).decode())
        username, password = form.get("username", [""])[0].strip(), form.get("password", [""])[0]
        if app.auth is None:
            return RedirectResponse(url="/", status_code=302)
        if username in app.auth and app.auth[username] == password:
            token = secrets.token_urlsafe(16)
            app.tokens[token] = username
            response = JSONResponse(content={"success": True})
            response.set_cookie(key="access-token-unsecure", value=token, httponly=True)
            return response
        raise HTTPException(status_code=400, detail="Incorrect credentials.")

    @app.get("/", response_class=HTMLResponse)
    def main(request: Request) -> Any:
        if app.auth is not None and get_current_user(request) is None:
            return HTMLResponse("<html><body><form action='login' method='post'>login</form></body></html>")
        head = "".join(
            f'<script type="text/javascript" src="{webpath(p)}"></script>'
            for p in assets()
            if p.endswith(".js")
        )
        head += f'<link rel="stylesheet" property="stylesheet" href="{webpath(assets()[-1])}">'
        return HTMLResponse(f"<html><head>{head}</head><body>Stable Diffusion (stand-in)</body></html>")

    @app.get("/file={path_or_url:path}", dependencies=[Depends(login_check)])
    def file(path_or_url: str) -> Any:
        """gradio/routes.py file(): 403 unless under the cwd, an allowed path or the upload dir."""
        abs_path = abspath(path_or_url)
        in_blocklist = any(is_in_or_equal(abs_path, Path(b)) for b in blocks.blocked_paths)
        if in_blocklist or any(part.startswith(".") for part in abs_path.parts) or abs_path.is_dir():
            raise HTTPException(403, f"File not allowed: {path_or_url}.")
        if not abs_path.exists():
            raise HTTPException(404, f"File not found: {path_or_url}.")
        in_app_dir = is_in_or_equal(abs_path, Path(app.cwd))
        in_allowlist = any(is_in_or_equal(abs_path, Path(a)) for a in blocks.allowed_paths)
        was_uploaded = is_in_or_equal(abs_path, Path(app.uploaded_file_dir))
        if not (in_app_dir or in_allowlist or was_uploaded):
            raise HTTPException(403, f"File not allowed: {path_or_url}.")
        return FileResponse(abs_path, headers={"Accept-Ranges": "bytes"})

    return app


def create_ui() -> Blocks:
    """ui.create_ui(): builds the tabs; the Extensions tab (ui_extensions.create_ui) lists config states,
    and UiLoadsave.dump_defaults() writes --ui-config-file (<data-dir>/ui-config.json)."""
    from modules import config_states
    from modules.shared_cmd_options import cmd_opts

    demo = Blocks()
    config_states.list_config_states()
    ui_settings: dict[str, Any] = {}
    if os.path.exists(cmd_opts.ui_config_file):
        with open(cmd_opts.ui_config_file, encoding="utf8") as f:
            ui_settings = json.load(f)
    ui_settings.setdefault("txt2img/Prompt/value", "")
    with open(cmd_opts.ui_config_file, "w", encoding="utf8") as f:
        json.dump(ui_settings, f, indent=4)
    return demo


def sysinfo() -> dict[str, Any]:
    """sysinfo.get_dict(): argv (only an argument equal to --gradio-auth/--api-auth hidden), whitelisted
    environment including COMMANDLINE_ARGS verbatim, paths, extensions, settings."""
    from modules import extensions, shared
    from modules.shared_cmd_options import cmd_opts

    argv = ["<hidden>" if v and v in (cmd_opts.gradio_auth, cmd_opts.api_auth) else v for v in sys.argv]
    whitelist = {
        "GIT",
        "INDEX_URL",
        "GRADIO_ANALYTICS_ENABLED",
        "PYTHONPATH",
        "COMMANDLINE_ARGS",
        "IGNORE_CMD_ARGS_ERRORS",
    }
    return {
        "Python": sys.version.split()[0],
        "Script path": script_path,
        "Data path": data_path,
        "Extensions dir": extensions_dir,
        "Commandline": argv,
        "Extensions": [{"name": e.name, "path": e.path} for e in extensions.active()],
        "Environment": {k: os.environ[k] for k in sorted(os.environ) if k in whitelist},
        "Config": shared.opts.data,
    }


def setup_ui_api(app: FastAPI) -> None:
    """ui.setup_ui_api(): /internal/ping and /internal/sysinfo (only with the UI, not under --nowebui)."""

    def ping() -> dict[str, Any]:
        return {}

    app.add_api_route("/internal/ping", ping, methods=["GET"])
    app.add_api_route(
        "/internal/sysinfo", lambda: PlainTextResponse(json.dumps(sysinfo(), indent=4)), methods=["GET"]
    )
