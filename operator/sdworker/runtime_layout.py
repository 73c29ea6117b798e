"""The SD pod contract in one place: where things sit on the runtime disk and what the pod sets around them.

Two producers must agree on it: the image builder (``sdworker_images``) lays the runtime tree out, and the
operator's renderer (``sdworker.domain.render``) starts webui against it. Each path, flag value and
environment variable below names the webui v1.10.1 code that decides it, so a reader can check the claim:

- ``config_states/``: ``modules/config_states.py`` ``list_config_states`` runs ``os.makedirs`` on
  ``<webui>/config_states`` (``modules/paths_internal.py`` ``config_states_dir``, next to the scripts, not
  under ``--data-dir``) whenever the UI is built; on a read-only disk it must already exist;
- ``extensions-builtin/``: ``paths_internal.extensions_builtin_dir`` is ``<webui>/extensions-builtin``
  whatever ``--data-dir`` says, while ``extensions_dir`` follows ``--data-dir`` (``/data/extensions``, empty);
- the model folders: ``shared_init.initialize`` makedirs ``--hypernetwork-dir``, the Lora extension's
  ``preload.py`` adds ``--lora-dir``, ``cmd_args.py`` has ``--vae-dir`` and ``--embeddings-dir``; with
  ``--data-dir /data`` their defaults are under ``/data``, so the pod names the runtime's folders explicitly;
- ``huggingface/hub/``: loading an SD 1.x checkpoint builds ``FrozenCLIPEmbedder``, which asks transformers
  for ``openai/clip-vit-large-patch14``'s tokenizer and config (``modules/sd_disable_initialization.py``
  tries the local cache, then the network); the pod points ``HF_HUB_CACHE`` at this read-only cache;
- ``GIT_PYTHON_REFRESH=quiet``: ``modules/gitpython_hack.py`` imports GitPython, which raises at import when
  no ``git`` executable exists (the base image has none) unless this is set.

Pure data and string functions: no I/O, importable by the operator, the agent and the builder alike.
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- the runtime tree (relative paths)

VENV_DIR: Final = "venv"
WEBUI_DIR: Final = "stable-diffusion-webui"
REPOSITORIES_DIR: Final = f"{WEBUI_DIR}/repositories"
# Where runtime.yaml's extensions go: webui always scans it (``extensions.list_extensions``).
EXTENSIONS_BUILTIN_DIR: Final = f"{WEBUI_DIR}/extensions-builtin"
CONFIG_STATES_DIR: Final = f"{WEBUI_DIR}/config_states"
# Our own extension (readiness and API credentials); source in images/sdworker_images/webui_extension/.
BUILTIN_EXTENSION_NAME: Final = "sdworker"
BUILTIN_EXTENSION_DIR: Final = f"{EXTENSIONS_BUILTIN_DIR}/{BUILTIN_EXTENSION_NAME}"
LAUNCH_SCRIPT: Final = f"{WEBUI_DIR}/launch.py"
VENV_PYTHON: Final = f"{VENV_DIR}/bin/python"

MODELS_DIR: Final = "models"
CKPT_DIR: Final = f"{MODELS_DIR}/Stable-diffusion"
LORA_DIR: Final = f"{MODELS_DIR}/Lora"
VAE_DIR: Final = f"{MODELS_DIR}/VAE"
EMBEDDINGS_DIR: Final = f"{MODELS_DIR}/embeddings"
HYPERNETWORKS_DIR: Final = f"{MODELS_DIR}/hypernetworks"
# webui flag -> runtime folder it is pointed at; every one exists on the disk (the builder makes empty ones).
MODEL_DIR_FLAGS: Final = (
    ("--ckpt-dir", CKPT_DIR),
    ("--lora-dir", LORA_DIR),
    ("--vae-dir", VAE_DIR),
    ("--embeddings-dir", EMBEDDINGS_DIR),
    ("--hypernetwork-dir", HYPERNETWORKS_DIR),
)
HF_HUB_DIR: Final = "huggingface/hub"
# transformers (4.30, utils/hub.py) migrates a cache without this file at import, writing into it.
HF_CACHE_VERSION_FILE: Final = f"{HF_HUB_DIR}/version.txt"
HF_CACHE_VERSION: Final = "1"
# Directories every runtime has, empty if nothing fills them: webui makedirs them at start (a no-op only if
# they exist on the read-only disk) or is pointed at them by a flag.
REQUIRED_DIRS: Final = (
    CONFIG_STATES_DIR,
    EXTENSIONS_BUILTIN_DIR,
    *(folder for _, folder in MODEL_DIR_FLAGS),
    HF_HUB_DIR,
)


def hf_repo_dir(repo_id: str) -> str:
    """The hub cache folder of a model repository: ``openai/clip-vit-large-patch14`` ->
    ``models--openai--clip-vit-large-patch14`` (huggingface_hub ``repo_folder_name``)."""
    return "models--" + repo_id.replace("/", "--")


# ---------------------------------------------------------------- the pod

# The base image's user (images/Dockerfile.base ``USER 10001:10001``; a unit test compares them).
POD_UID: Final = 10001
POD_GID: Final = 10001
RUNTIME_MOUNT: Final = "/runtime"
DATA_DIR: Final = "/data"
AUTH_DIR: Final = "/secrets/webui-auth"
# Secret keys of webui.authSecretRef, mounted as files of these names under AUTH_DIR.
AUTH_KEY_GRADIO: Final = "gradio-auth"
AUTH_KEY_API: Final = "api-auth"
API_AUTH_FILE_ENV: Final = "SDWORKER_API_AUTH_FILE"
API_AUTH_FILE: Final = f"{AUTH_DIR}/{AUTH_KEY_API}"
GRADIO_AUTH_FILE: Final = f"{AUTH_DIR}/{AUTH_KEY_GRADIO}"

# The flags that make webui start fast from a prepared runtime; the operator sets them, so SDWorker
# webui.args may not (sdworker.api.constants.OWNED_FLAGS).
# What each does in webui v1.10.1 (launch.py, modules/launch_utils.py, initialize.py, sd_models.py):
FAST_START_FLAGS: Final = (
    # launch.py skips prepare_environment(): no pip installs, git clones, extension install.py, or the
    # Python-version and CUDA checks; everything it would fetch is already on the runtime disk.
    "--skip-prepare-environment",
    # run_pip() returns at once: a guard for extensions that call launch.run_pip() at run time.
    "--skip-install",
    # No-ops under --skip-prepare-environment (only prepare_environment() reads them); kept so that a
    # debugging start without it still skips the checks.
    "--skip-torch-cuda-test",
    "--skip-python-version-check",
    # initialize.check_versions(): no torch/xformers version check at start.
    "--skip-version-check",
    # sd_models.list_models(): never download SD 1.5 when the checkpoint is missing (fail instead).
    "--no-download-sd-model",
    # No sha256 of the multi-GB checkpoint at load (the agent verified the disk already).
    "--no-hashing",
)

# Served by the built-in extension without credentials: 200 once the checkpoint is in memory, 503 with the
# reason (ModelLoading, ModelLoadFailed) before.
READY_PATH: Final = "/sdworker/ready"
# webui's own liveness route (``modules/ui.py`` ``setup_ui_api``); absent under --nowebui.
PING_PATH: Final = "/internal/ping"


def in_pod(relative: str) -> str:
    """Where a runtime path is seen inside the pod."""
    return f"{RUNTIME_MOUNT}/{relative}"


# The only writable places: /data (an emptyDir); the root filesystem and the runtime are read-only.
TMP_DIR: Final = DATA_DIR
GRADIO_TEMP_DIR: Final = f"{DATA_DIR}/gradio"
HF_HOME: Final = f"{DATA_DIR}/huggingface"
XDG_CACHE_HOME: Final = f"{DATA_DIR}/cache"
XDG_CONFIG_HOME: Final = f"{DATA_DIR}/config"

# name -> value, in the order the pod lists them. No credentials: the auth file is named by path only.
POD_ENV: Final = (
    # GitPython (modules/gitpython_hack.py) raises at import without a git executable unless told not to.
    ("GIT_PYTHON_REFRESH", "quiet"),
    # transformers/huggingface_hub: read the tokenizer and config from the runtime's cache, never the network.
    ("HF_HUB_CACHE", in_pod(HF_HUB_DIR)),
    # The older names of the same setting, read by the huggingface_hub/transformers versions webui pins.
    ("HUGGINGFACE_HUB_CACHE", in_pod(HF_HUB_DIR)),
    ("TRANSFORMERS_CACHE", in_pod(HF_HUB_DIR)),
    ("HF_HOME", HF_HOME),
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    # tempfile and gradio's uploads/outputs (gradio 3.41 reads GRADIO_TEMP_DIR): on /data, not /tmp.
    ("TMPDIR", TMP_DIR),
    ("GRADIO_TEMP_DIR", GRADIO_TEMP_DIR),
    # HOME (/home/sd) is on the read-only root: caches (torch hub, matplotlib fonts) and configs go to /data.
    ("XDG_CACHE_HOME", XDG_CACHE_HOME),
    ("XDG_CONFIG_HOME", XDG_CONFIG_HOME),
    ("PYTHONDONTWRITEBYTECODE", "1"),  # the runtime is read-only; its pycs were compiled by the builder
    ("PYTHONUNBUFFERED", "1"),
    (API_AUTH_FILE_ENV, API_AUTH_FILE),
)
