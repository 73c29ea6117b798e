"""webui v1.10.1 extensions-builtin/Lora/preload.py: where ``--lora-dir`` is defined (not cmd_args.py)."""

import os

from modules import paths_internal
from modules.paths_internal import normalized_filepath


def preload(parser):
    default = os.path.join(paths_internal.models_path, "Lora")
    parser.add_argument("--lora-dir", type=normalized_filepath, default=default)
