"""webui v1.10.1 modules/extensions.py (list_extensions, active) and modules/script_loading.py.

Extensions come from ``extensions-builtin/`` next to modules/ (always) and ``<data-dir>/extensions``: with
``--data-dir /data`` a folder ``stable-diffusion-webui/extensions/`` on the runtime disk is never scanned.
"""

import importlib.util
import os
import traceback
from dataclasses import dataclass

from modules.gitpython_hack import Repo  # noqa: F401 - importing GitPython is part of start-up
from modules.paths_internal import extensions_builtin_dir, extensions_dir


@dataclass
class Extension:
    """extensions.Extension: name, path, enabled, is_builtin."""

    name: str
    path: str
    enabled: bool = True
    is_builtin: bool = False


extensions: list[Extension] = []


def load_module(path: str):
    """script_loading.load_module(): exec a file as a module named after its basename."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preload_extensions(directory: str, parser, extension_list=None) -> None:
    """script_loading.preload_extensions(): run each extension's preload.py ``preload(parser)``."""
    if not os.path.isdir(directory):
        return
    for dirname in sorted(extension_list if extension_list is not None else os.listdir(directory)):
        preload_script = os.path.join(directory, dirname, "preload.py")
        if not os.path.isfile(preload_script):
            continue
        try:
            module = load_module(preload_script)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception:
            print(f"*** Error running preload() for {preload_script}\n{traceback.format_exc()}")


def list_extensions() -> None:
    """extensions.list_extensions(): scan extensions-builtin, then <data-dir>/extensions."""
    from modules.shared_cmd_options import cmd_opts

    extensions.clear()
    if cmd_opts.disable_all_extensions:
        return
    for dirname in (extensions_builtin_dir, extensions_dir):
        if not os.path.isdir(dirname):
            continue
        for name in sorted(os.listdir(dirname)):
            path = os.path.join(dirname, name)
            if os.path.isdir(path):
                extensions.append(Extension(name, path, is_builtin=dirname == extensions_builtin_dir))


def active() -> list[Extension]:
    """extensions.active(): enabled ones; only built-ins under --disable-extra-extensions."""
    from modules.shared_cmd_options import cmd_opts

    if cmd_opts.disable_extra_extensions:
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]
