"""webui v1.10.1 modules/sd_models.py: the checkpoint list, ``model_data`` and load_model().

load_model() reads the checkpoint with the safetensors library (read_state_dict; numpy instead of torch
here) and builds what an SD 1.x model's FrozenCLIPEmbedder builds from the Hugging Face hub:
``CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14")`` and the text encoder's CLIPTextConfig,
first with transformers' cached_file forced to local_files_only and then from the network
(sd_disable_initialization.DisableInitialization), and when that "quick" way raises, once more plainly (the
"slow method"). Without a hub cache and without network the load fails; model_data.sd_model stays None,
``was_loaded_at_least_once`` stays False, and the next read of shared.sd_model tries again.
"""

import os
import sys
import threading
import traceback
from typing import Any

CLIP_VERSION = "openai/clip-vit-large-patch14"


class CheckpointInfo:
    """sd_models.CheckpointInfo with --no-hashing: title = name relative to the models dir, no hash."""

    def __init__(self, filename: str, root: str) -> None:
        self.filename = filename
        name = (
            os.path.relpath(filename, root)
            if filename.startswith(root + os.sep)
            else os.path.basename(filename)
        )
        self.name = name
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.title = name
        self.hash = self.sha256 = self.shorthash = None


checkpoints_list: dict[str, CheckpointInfo] = {}


def list_models() -> None:
    """sd_models.list_models(): checkpoints in --ckpt-dir and <models>/Stable-diffusion, and --ckpt."""
    from modules.paths_internal import models_path
    from modules.shared_cmd_options import cmd_opts

    checkpoints_list.clear()
    model_path = os.path.abspath(os.path.join(models_path, "Stable-diffusion"))
    for root in (cmd_opts.ckpt_dir, model_path):
        if root and os.path.isdir(root):
            for dirpath, _, files in os.walk(root):
                for f in sorted(files):
                    if f.endswith((".safetensors", ".ckpt")):
                        info = CheckpointInfo(os.path.join(dirpath, f), root)
                        checkpoints_list[info.title] = info
    if os.path.exists(cmd_opts.ckpt):
        info = CheckpointInfo(cmd_opts.ckpt, cmd_opts.ckpt_dir or model_path)
        checkpoints_list.setdefault(info.title, info)


def select_checkpoint() -> CheckpointInfo:
    """sd_models.select_checkpoint(): opts.sd_model_checkpoint, else --ckpt, else the first one."""
    from modules import shared
    from modules.shared_cmd_options import cmd_opts

    wanted = shared.opts.data.get("sd_model_checkpoint")
    if wanted in checkpoints_list:
        return checkpoints_list[wanted]
    for info in checkpoints_list.values():
        if info.filename == cmd_opts.ckpt:
            return info
    if not checkpoints_list:
        raise FileNotFoundError(
            "No checkpoints found. When searching for checkpoints, looked at: "
            f"file {cmd_opts.ckpt}, directory {cmd_opts.ckpt_dir}"
        )
    return next(iter(checkpoints_list.values()))


class StandInModel:
    """What webui's load_model() returns, reduced to what the stand-in's endpoints use."""

    def __init__(self, info: CheckpointInfo, state_dict: dict[str, Any], tokenizer: Any, text_config: Any):
        self.sd_checkpoint_info = info
        self.sd_model_checkpoint = info.filename
        self.state_dict = state_dict
        self.tokenizer = tokenizer
        self.text_config = text_config


def _frozen_clip_embedder() -> tuple[Any, Any]:
    """ldm FrozenCLIPEmbedder.__init__: CLIPTokenizer and (via CLIPTextModel) CLIPTextConfig from the hub."""
    from transformers import CLIPTextConfig, CLIPTokenizer

    return CLIPTokenizer.from_pretrained(CLIP_VERSION), CLIPTextConfig.from_pretrained(CLIP_VERSION)


class DisableInitialization:
    """sd_disable_initialization.DisableInitialization: transformers' cached_file tries local_files_only
    first and falls back to the network (transformers_utils_hub_get_file_from_cache)."""

    def __enter__(self) -> "DisableInitialization":
        import transformers.configuration_utils as cu
        import transformers.tokenization_utils_base as tu

        self.replaced = [(tu, tu.cached_file), (cu, cu.cached_file)]

        def wrap(original: Any) -> Any:
            def cached_file(url: Any, *args: Any, local_files_only: bool = False, **kwargs: Any) -> Any:
                if url == CLIP_VERSION and args and args[0] == "added_tokens.json":
                    return None  # "this file is always 404, prevent making request"
                try:
                    res = original(url, *args, local_files_only=True, **kwargs)
                    if res is None:
                        res = original(url, *args, local_files_only=False, **kwargs)
                    return res
                except Exception:
                    return original(url, *args, local_files_only=False, **kwargs)

            return cached_file

        for module, original in self.replaced:
            module.cached_file = wrap(original)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, original in self.replaced:
            module.cached_file = original


def read_state_dict(filename: str) -> dict[str, Any]:
    """sd_models.read_state_dict(): safetensors load_file (safetensors.torch there, .numpy here)."""
    import safetensors.numpy

    return safetensors.numpy.load_file(filename)


def load_model(checkpoint_info: CheckpointInfo | None = None) -> StandInModel:
    """sd_models.load_model(): state dict, model creation ("quickly", then the "slow method"), callbacks."""
    from modules import script_callbacks

    checkpoint_info = checkpoint_info or select_checkpoint()
    print(f"Loading weights [{checkpoint_info.shorthash}] from {checkpoint_info.filename}", flush=True)
    state_dict = read_state_dict(checkpoint_info.filename)
    created = None
    try:
        with DisableInitialization():
            created = _frozen_clip_embedder()
    except Exception:
        print(f"*** Error creating model quickly\n{traceback.format_exc()}", file=sys.stderr)
    if created is None:
        print("Failed to create model quickly; will retry using slow method.", file=sys.stderr, flush=True)
        created = _frozen_clip_embedder()
    sd_model = StandInModel(checkpoint_info, state_dict, *created)
    model_data.set_sd_model(sd_model)
    model_data.was_loaded_at_least_once = True
    script_callbacks.model_loaded_callback(sd_model)
    print(f"Model loaded: {checkpoint_info.title}", flush=True)
    return sd_model


class SdModelData:
    """sd_models.SdModelData: get_sd_model() loads under ``lock`` until a load has succeeded once."""

    def __init__(self) -> None:
        self.sd_model: Any = None
        self.loaded_sd_models: list[Any] = []
        self.was_loaded_at_least_once = False
        self.lock = threading.Lock()

    def get_sd_model(self) -> Any:
        if self.was_loaded_at_least_once:
            return self.sd_model
        if self.sd_model is None:
            with self.lock:
                if self.sd_model is not None or self.was_loaded_at_least_once:
                    return self.sd_model
                try:
                    load_model()
                except Exception:
                    print(
                        f"*** Error loading stable diffusion model\n{traceback.format_exc()}", file=sys.stderr
                    )
                    print("Stable diffusion model failed to load", file=sys.stderr, flush=True)
                    self.sd_model = None
        return self.sd_model

    def set_sd_model(self, v: Any) -> None:
        self.sd_model = v
        if v is not None:
            self.loaded_sd_models.insert(0, v)


model_data = SdModelData()
