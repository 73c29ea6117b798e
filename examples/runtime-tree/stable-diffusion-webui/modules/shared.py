"""webui v1.10.1 modules/shared.py + options.py: cmd_opts, opts, and ``shared.sd_model`` as a property.

``shared.sd_model`` is not a plain attribute: reading it calls sd_models.model_data.get_sd_model(), which
loads the model under a lock (modules/shared_items.py class Shared). So a request that reads it while the
background load runs blocks until the load ends, and after a failed load it starts the load again.
"""

import json
import os
import sys
from typing import Any

from modules.paths_internal import data_path
from modules.shared_cmd_options import cmd_opts

config_filename = cmd_opts.ui_settings_file
styles_filename = cmd_opts.styles_file = cmd_opts.styles_file or [os.path.join(data_path, "styles.csv")]
demo: Any = None


class Options:
    """options.Options: settings read from config.json at start, written back by Options.save()."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "sd_model_checkpoint": None,
            "disabled_extensions": [],
            "samples_format": "png",
        }

    def load(self, filename: str) -> None:
        """options.Options.load(): a missing file is fine (shared_init catches FileNotFoundError)."""
        with open(filename, encoding="utf8") as file:
            self.data.update(json.load(file))

    def save(self, filename: str) -> None:
        """options.Options.save(): json.dump into the settings file (under --data-dir by default)."""
        with open(filename, "w", encoding="utf8") as file:
            json.dump(self.data, file, indent=4, ensure_ascii=False)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


opts = Options()


class Shared(sys.modules[__name__].__class__):  # type: ignore[misc]
    """shared_items.Shared: the module's sd_model property."""

    @property
    def sd_model(self) -> Any:
        from modules import sd_models

        return sd_models.model_data.get_sd_model()


sys.modules[__name__].__class__ = Shared
