"""webui v1.10.1 modules/scripts.py load_scripts(): import every scripts/*.py of each active extension.

A script that fails to import is reported and skipped (errors.report), as in webui.
"""

import os
import traceback

from modules import extensions

loaded: list[str] = []


def load_scripts() -> None:
    """scripts.load_scripts() via list_scripts("scripts", ".py"): sorted files of each active extension."""
    loaded.clear()
    for ext in extensions.active():
        directory = os.path.join(ext.path, "scripts")
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not name.endswith(".py") or not os.path.isfile(path):
                continue
            try:
                extensions.load_module(path)
                loaded.append(path)
            except Exception:
                print(f"*** Error loading script: {path}\n{traceback.format_exc()}")
