"""webui v1.10.1 modules/initialize.py (imports, initialize, initialize_rest) and modules/shared_init.py."""

import contextlib
import os
import threading


def imports() -> None:
    """initialize.imports(): heavy imports (gradio, ldm -> transformers), then shared_init.initialize().

    In webui the modules imported here reach script_callbacks -> extensions -> gitpython_hack -> ``import
    git``, so a missing git executable fails the process here, on import of webui.py.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import fastapi  # noqa: F401
    import transformers  # noqa: F401
    from modules import script_callbacks, shared, ui  # noqa: F401

    shared_init()


def shared_init() -> None:
    """shared_init.initialize(): makedirs the hypernetwork dir, load config.json, read the styles files.

    ``os.makedirs(cmd_opts.hypernetwork_dir, exist_ok=True)`` passes for an existing directory on a
    read-only disk and fails (EROFS) for a missing one.
    """
    from modules import shared
    from modules.shared_cmd_options import cmd_opts

    os.makedirs(cmd_opts.hypernetwork_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        shared.opts.load(shared.config_filename)
    for path in shared.styles_filename:  # styles.StyleDatabase(): reads each existing file
        if os.path.exists(path):
            with open(path, encoding="utf-8-sig") as f:
                f.read()


def initialize() -> None:
    """initialize.initialize() -> initialize_rest(): list extensions and models, load scripts, then start
    the model load in a (non-daemon) background thread unless --skip-load-model-at-start.

    The thread keeps the process alive after the main thread dies, so a crash looks like a hang while the
    load retries the network.
    """
    from modules import extensions, scripts, sd_models, shared
    from modules.shared_cmd_options import cmd_opts

    extensions.list_extensions()
    sd_models.list_models()
    scripts.load_scripts()

    def load_model() -> None:
        """initialize_rest.load_model(): reads ``shared.sd_model`` to load the model."""
        shared.sd_model  # noqa: B018

    if not cmd_opts.skip_load_model_at_start:
        threading.Thread(target=load_model).start()
