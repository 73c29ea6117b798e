"""Stand-in for webui v1.10.1's webui.py: the order of start-up steps, for the UI and for --nowebui."""

from __future__ import annotations

import os
import time

from modules import initialize, initialize_util

initialize.imports()  # webui.py module level: initialize.imports() (GitPython is imported here)


def create_api(app):  # type: ignore[no-untyped-def]
    """webui.py create_api(): modules.api.api.Api(app, queue_lock)."""
    from modules.api.api import Api
    from modules.call_queue import queue_lock

    return Api(app, queue_lock)


def api_only() -> None:
    """webui.py api_only(): no UI, so no ui.create_ui() (no config_states) and no gradio auth file."""
    from fastapi import FastAPI
    from modules import script_callbacks
    from modules.shared_cmd_options import cmd_opts

    initialize.initialize()
    app = FastAPI()
    initialize_util.setup_middleware(app)
    api = create_api(app)
    script_callbacks.before_ui_callback()
    script_callbacks.app_started_callback(None, app)
    api.launch(server_name=initialize_util.gradio_server_name(), port=cmd_opts.port or 7861)


def webui() -> None:
    """webui.py webui(): create the UI, read the gradio credentials, launch, then add the APIs.

    The server already answers while routes are being added; app_started_callback runs last.
    """
    from modules import script_callbacks, shared, ui
    from modules.shared_cmd_options import cmd_opts

    initialize.initialize()
    script_callbacks.before_ui_callback()
    shared.demo = ui.create_ui()
    gradio_auth_creds = list(initialize_util.get_gradio_auth_creds()) or None
    app = shared.demo.launch(
        server_name=initialize_util.gradio_server_name(),
        server_port=cmd_opts.port,
        auth=gradio_auth_creds,
        allowed_paths=cmd_opts.gradio_allowed_path,
    )
    initialize_util.setup_middleware(app)
    ui.setup_ui_api(app)
    if cmd_opts.api:
        create_api(app)
    script_callbacks.app_started_callback(shared.demo, app)
    print("Startup complete.", flush=True)
    while shared.demo.server_thread.is_alive():
        time.sleep(1)
    os._exit(1)
