"""Paths as webui v1.10.1's modules/paths_internal.py computes them (module level).

``--data-dir`` moves models, extensions, outputs and the settings files; it does not move the webui tree's
own ``config_states`` and ``extensions-builtin`` (both next to ``modules/``), which is why a read-only
runtime must carry them. $COMMANDLINE_ARGS is appended to sys.argv here, as webui does.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path


def normalized_filepath(filepath: str) -> str:
    """paths_internal.normalized_filepath: absolute, symlinks kept."""
    return str(Path(filepath).absolute())


sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))

cwd = os.getcwd()
modules_path = os.path.dirname(os.path.realpath(__file__))
script_path = os.path.dirname(modules_path)

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--data-dir", type=str, default=os.path.dirname(modules_path))
_pre.add_argument("--models-dir", type=str, default=None)
_pre_opts = _pre.parse_known_args()[0]

data_path = _pre_opts.data_dir
models_path = _pre_opts.models_dir or os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
config_states_dir = os.path.join(script_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")
