"""sdworker's built-in webui extension: its source lives here, the image builder copies it onto every runtime.

The extension (``sdworker/``) runs inside webui, not in this package: see sdworker/scripts/sdworker_api.py.
This module only tells the builder (and the tests that assemble a runtime tree) where its files are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

NAME: Final = "sdworker"
"""The extension's folder name under stable-diffusion-webui/extensions-builtin/ on a runtime."""


def extension_dir() -> Path:
    """The directory to copy to ``stable-diffusion-webui/extensions-builtin/sdworker`` of a runtime."""
    return Path(__file__).resolve().parent / NAME
