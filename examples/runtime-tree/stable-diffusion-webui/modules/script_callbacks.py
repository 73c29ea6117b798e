"""webui v1.10.1 modules/script_callbacks.py: the callbacks extensions register and webui fires.

As in webui, a callback that raises is reported and skipped (script_callbacks.report_exception), so an
extension failing in on_app_started leaves the app running without whatever it meant to install.
"""

import traceback
from collections.abc import Callable
from typing import Any

from modules import extensions  # noqa: F401 - script_callbacks imports extensions (and so GitPython)

_callbacks: dict[str, list[Callable[..., Any]]] = {
    "app_started": [],
    "model_loaded": [],
    "before_ui": [],
}


def _fire(name: str, *args: Any) -> None:
    for callback in list(_callbacks[name]):
        try:
            callback(*args)
        except Exception:
            print(f"*** Error executing callback {name}_callback for {callback!r}\n{traceback.format_exc()}")


def on_app_started(callback: Callable[[Any, Any], None]) -> None:
    """script_callbacks.on_app_started(callback): called with (demo, app); demo is None under --nowebui."""
    _callbacks["app_started"].append(callback)


def on_model_loaded(callback: Callable[[Any], None]) -> None:
    """script_callbacks.on_model_loaded(callback): called with the loaded sd_model."""
    _callbacks["model_loaded"].append(callback)


def on_before_ui(callback: Callable[[], None]) -> None:
    """script_callbacks.on_before_ui(callback)."""
    _callbacks["before_ui"].append(callback)


def app_started_callback(demo: Any, app: Any) -> None:
    """script_callbacks.app_started_callback(demo, app)."""
    _fire("app_started", demo, app)


def model_loaded_callback(sd_model: Any) -> None:
    """script_callbacks.model_loaded_callback(sd_model)."""
    _fire("model_loaded", sd_model)


def before_ui_callback() -> None:
    """script_callbacks.before_ui_callback()."""
    _fire("before_ui")
