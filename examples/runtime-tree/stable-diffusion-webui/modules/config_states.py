"""webui v1.10.1 modules/config_states.py list_config_states().

Called by ui_extensions.create_ui() (so by ui.create_ui(), i.e. only when the UI is built, not under
--nowebui). It makedirs ``<webui>/config_states``, which --data-dir does not move; on a read-only runtime
that fails with OSError(EROFS) unless the directory is already on the disk (git archive never makes it).
"""

import json
import os

from modules.paths_internal import config_states_dir

all_config_states: dict[str, dict] = {}


def list_config_states() -> dict[str, dict]:
    all_config_states.clear()
    os.makedirs(config_states_dir, exist_ok=True)
    for filename in sorted(os.listdir(config_states_dir)):
        if filename.endswith(".json"):
            with open(os.path.join(config_states_dir, filename), encoding="utf-8") as f:
                all_config_states[filename] = json.load(f)
    return all_config_states
