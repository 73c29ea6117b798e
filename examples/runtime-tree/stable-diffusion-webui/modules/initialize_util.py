"""webui v1.10.1 modules/initialize_util.py: gradio credentials, server name, middleware."""

from collections.abc import Iterator
from typing import Any


def get_gradio_auth_creds() -> Iterator[tuple[str, ...]]:
    """initialize_util.get_gradio_auth_creds(): --gradio-auth, then --gradio-auth-path opened unguarded.

    A file the process cannot read (root-owned 0400 for uid 10001) raises PermissionError out of webui().
    """
    from modules.shared_cmd_options import cmd_opts

    def process_credential_line(s: str) -> tuple[str, ...] | None:
        s = s.strip()
        return tuple(s.split(":", 1)) if s else None

    if cmd_opts.gradio_auth:
        for cred in cmd_opts.gradio_auth.split(","):
            if c := process_credential_line(cred):
                yield c
    if cmd_opts.gradio_auth_path:
        with open(cmd_opts.gradio_auth_path, encoding="utf8") as file:
            for line in file.readlines():
                for cred in line.strip().split(","):
                    if c := process_credential_line(cred):
                        yield c


def gradio_server_name() -> str | None:
    """initialize_util.gradio_server_name(): --server-name, else 0.0.0.0 with --listen, else gradio's."""
    from modules.shared_cmd_options import cmd_opts

    if cmd_opts.server_name:
        return cmd_opts.server_name
    return "0.0.0.0" if cmd_opts.listen else None


def setup_middleware(app: Any) -> None:
    """initialize_util.setup_middleware(): reset the stack, add GZip (+CORS), build without assigning.

    starlette 0.26.1's add_middleware() raises once ``middleware_stack`` is built (on the first request),
    so webui sets it to None first; the stack is then rebuilt lazily on the next request. An extension
    adding middleware from on_app_started must do the same.
    """
    from starlette.middleware.gzip import GZipMiddleware

    app.middleware_stack = None
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.build_middleware_stack()
